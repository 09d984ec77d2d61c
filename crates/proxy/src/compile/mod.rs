//! Compiles xDS resources into the proxy's immutable runtime config.
//!
//! Anything the proxy cannot honour is refused with a message naming the field, so
//! the resource is rejected alone (and NACKed) instead of being half-applied.

mod actions;
mod cluster;
mod cors;
mod ext_authz;
mod fault;
mod filters;
mod hash_policy;
mod jwt_authn;
mod listener;
mod load_balancer;
mod matchers;
mod percent;
mod rbac;
mod retry;
mod route;
mod telemetry;
mod tls;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{
    Address, ConfigSource, address, config_source, socket_address,
};
use envoy_types::pb::google::protobuf::{Any, Duration as ProtoDuration};
use prost::Message;
use thiserror::Error;

pub use cluster::{compile_cluster, compile_endpoints};
pub use listener::{
    CertDetails, ClientCertHeader, FilterChainSpec, HttpChainSpec, ListenerSpec, NetworkFilter,
    RouteSource, TcpProxySpec, compile_listener,
};
pub use route::compile_route_config;
pub use tls::{DownstreamTls, OwnTls, SanName, TransportSockets, UpstreamTls, UpstreamTrust};

use crate::resource::ResourceType;

/// A resource refused as a whole, with the reason a user can act on.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{kind} {name}: {reason}")]
pub struct CompileError {
    pub kind: ResourceType,
    pub name: String,
    pub reason: String,
}

impl CompileError {
    pub fn new(kind: ResourceType, name: impl Into<String>, reason: impl Into<String>) -> Self {
        CompileError {
            kind,
            name: name.into(),
            reason: reason.into(),
        }
    }
}

/// The reason part of a rejection, before the resource is named.
type Reason = String;

pub(crate) fn decode_any<M: Message + Default>(any: &Any, expected: &str) -> Result<M, Reason> {
    if any.type_url != expected {
        return Err(format!("expected {expected}, got {}", any.type_url));
    }
    M::decode(any.value.as_slice()).map_err(|e| format!("cannot decode {expected}: {e}"))
}

fn type_url_of(name: &str) -> String {
    format!("type.googleapis.com/{name}")
}

fn duration(d: &ProtoDuration) -> Duration {
    let secs = u64::try_from(d.seconds).unwrap_or(0);
    let nanos = u32::try_from(d.nanos).unwrap_or(0);
    Duration::new(secs, nanos)
}

fn socket_addr(address: Option<&Address>, field: &str) -> Result<SocketAddr, Reason> {
    let (host, port) = socket_host(address, field)?;
    let ip: IpAddr = host
        .parse()
        .map_err(|_| format!("{field}.address {host:?} is not an IP address"))?;
    Ok(SocketAddr::new(ip, port))
}

/// A socket address whose host may be a name (the endpoints of DNS clusters).
fn socket_host<'a>(address: Option<&'a Address>, field: &str) -> Result<(&'a str, u16), Reason> {
    let Some(address::Address::SocketAddress(socket)) = address.and_then(|a| a.address.as_ref())
    else {
        return Err(format!("{field} must be a socket_address"));
    };
    let port = match socket.port_specifier {
        Some(socket_address::PortSpecifier::PortValue(port)) => {
            u16::try_from(port).map_err(|_| format!("{field}.port_value {port} is out of range"))?
        }
        Some(socket_address::PortSpecifier::NamedPort(_)) => {
            return Err(format!("{field}.named_port is not supported yet"));
        }
        None => 0,
    };
    Ok((socket.address.as_str(), port))
}

/// Only ADS config sources are honoured: the proxy has one control-plane stream.
fn require_ads(source: Option<&ConfigSource>, field: &str) -> Result<(), Reason> {
    match source.and_then(|s| s.config_source_specifier.as_ref()) {
        Some(config_source::ConfigSourceSpecifier::Ads(_)) => Ok(()),
        // An empty config source means "the same as mine" only for xdstp names; refuse.
        None => Err(format!("{field} must be ads")),
        Some(_) => Err(format!(
            "{field} is not ads; only ADS config sources are supported"
        )),
    }
}
