//! How a cluster's endpoints make and keep their connections: protocol, timeouts,
//! keepalives, and when a connection is retired.

use std::net::IpAddr;
use std::time::Duration;

/// How long an idle pooled connection is kept when the cluster does not say.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// How a cluster's endpoints connect and keep their connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolOptions {
    pub protocol: UpstreamProtocol,
    pub connect_timeout: Duration,
    /// Idle connections are closed after this (evicted on a timer).
    pub idle_timeout: Duration,
    /// A connection is retired after this many requests.
    pub max_requests_per_connection: Option<u32>,
    /// A connection is retired, at its next request's end, once this old.
    pub max_connection_duration: Option<Duration>,
    pub tcp_keepalive: Option<TcpKeepalive>,
    pub http2_keepalive: Option<Http2Keepalive>,
    /// The address connections leave from (Envoy's `upstream_bind_config`): the
    /// proxy's workload address on one machine, where workloads are loopback aliases.
    pub source_ip: Option<IpAddr>,
    /// Originated TLS sends the request's host as SNI (Envoy's `auto_sni`)...
    pub auto_sni: bool,
    /// ...and requires the server's certificate to be valid for it (`auto_san_validation`).
    pub auto_san_validation: bool,
}

impl PoolOptions {
    pub fn new(protocol: UpstreamProtocol, connect_timeout: Duration) -> Self {
        PoolOptions {
            protocol,
            connect_timeout,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_requests_per_connection: None,
            max_connection_duration: None,
            tcp_keepalive: None,
            http2_keepalive: None,
            source_ip: None,
            auto_sni: false,
            auto_san_validation: false,
        }
    }

    /// Connections are retired by use, so each request notes the one it went on.
    pub fn retires_connections(&self) -> bool {
        self.max_requests_per_connection.is_some() || self.max_connection_duration.is_some()
    }
}

/// SO_KEEPALIVE probes; unset fields are the system's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpKeepalive {
    pub probes: Option<u32>,
    pub time: Option<Duration>,
    pub interval: Option<Duration>,
}

/// HTTP/2 PINGs every `interval`; no answer within `timeout` closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Keepalive {
    pub interval: Duration,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    Http1,
    /// HTTP/2 with prior knowledge (h2c).
    Http2,
}

impl UpstreamProtocol {
    /// Its ALPN name, offered over TLS.
    pub fn alpn(self) -> &'static str {
        match self {
            UpstreamProtocol::Http1 => "http/1.1",
            UpstreamProtocol::Http2 => "h2",
        }
    }
}
