//! Port protocols, parsed the way Istio parses them.

use std::fmt;

/// The protocol of a service port.
///
/// Parsing is case-insensitive; anything Istio does not know is [`Protocol::Unsupported`]
/// (which Istio, and Bosun, treat as opaque TCP with protocol sniffing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Http,
    Http2,
    Grpc,
    GrpcWeb,
    Https,
    Tcp,
    Tls,
    Udp,
    Mongo,
    Redis,
    Mysql,
    HttpProxy,
    Unsupported,
}

impl Protocol {
    /// Parses a protocol name (`HTTP`, `grpc`, `GRPC-Web`, ...), as Istio's `protocol.Parse`.
    pub fn parse(name: &str) -> Self {
        match name.to_ascii_lowercase().as_str() {
            "http" => Self::Http,
            "http2" => Self::Http2,
            "grpc" => Self::Grpc,
            "grpc-web" => Self::GrpcWeb,
            "https" => Self::Https,
            "tcp" => Self::Tcp,
            "tls" => Self::Tls,
            "udp" => Self::Udp,
            "mongo" => Self::Mongo,
            "redis" => Self::Redis,
            "mysql" => Self::Mysql,
            "http_proxy" => Self::HttpProxy,
            _ => Self::Unsupported,
        }
    }

    /// The protocol a port *name* implies: `http-web` → HTTP, `grpc` → GRPC, `tcp-db` → TCP.
    /// Istio's convention for ports that do not declare a protocol.
    pub fn from_port_name(port_name: &str) -> Self {
        let prefix = port_name.split('-').next().unwrap_or(port_name);
        Self::parse(prefix)
    }

    /// The protocol of a port: its declared `protocol` if any, else what its name implies.
    pub fn of_port(declared: Option<&str>, port_name: &str) -> Self {
        match declared {
            Some(declared) if !declared.is_empty() => Self::parse(declared),
            _ => Self::from_port_name(port_name),
        }
    }

    /// HTTP of any version: routed by HTTP rules (VirtualService `http`).
    pub fn is_http(self) -> bool {
        matches!(
            self,
            Self::Http | Self::Http2 | Self::Grpc | Self::GrpcWeb | Self::HttpProxy
        )
    }

    /// Needs HTTP/2 to the upstream.
    pub fn is_http2(self) -> bool {
        matches!(self, Self::Http2 | Self::Grpc | Self::GrpcWeb)
    }

    /// Carried as TLS (routed by SNI).
    pub fn is_tls(self) -> bool {
        matches!(self, Self::Https | Self::Tls)
    }

    /// Proxied as an opaque byte stream.
    pub fn is_tcp(self) -> bool {
        matches!(
            self,
            Self::Tcp
                | Self::Https
                | Self::Tls
                | Self::Mongo
                | Self::Redis
                | Self::Mysql
                | Self::Unsupported
        )
    }

    /// Istio's canonical spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "HTTP",
            Self::Http2 => "HTTP2",
            Self::Grpc => "GRPC",
            Self::GrpcWeb => "GRPC-Web",
            Self::Https => "HTTPS",
            Self::Tcp => "TCP",
            Self::Tls => "TLS",
            Self::Udp => "UDP",
            Self::Mongo => "Mongo",
            Self::Redis => "Redis",
            Self::Mysql => "MySQL",
            Self::HttpProxy => "HTTP_PROXY",
            Self::Unsupported => "UnsupportedProtocol",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_case_insensitively() {
        assert_eq!(Protocol::parse("HTTP"), Protocol::Http);
        assert_eq!(Protocol::parse("grpc"), Protocol::Grpc);
        assert_eq!(Protocol::parse("GRPC-Web"), Protocol::GrpcWeb);
        assert_eq!(Protocol::parse("Mongo"), Protocol::Mongo);
        assert_eq!(Protocol::parse("smtp"), Protocol::Unsupported);
    }

    #[test]
    fn port_name_prefix_implies_the_protocol() {
        assert_eq!(Protocol::from_port_name("http-foo"), Protocol::Http);
        assert_eq!(Protocol::from_port_name("grpc"), Protocol::Grpc);
        assert_eq!(Protocol::from_port_name("http2-api"), Protocol::Http2);
        assert_eq!(Protocol::from_port_name("web"), Protocol::Unsupported);
        assert_eq!(Protocol::of_port(Some("TCP"), "http-foo"), Protocol::Tcp);
        assert_eq!(Protocol::of_port(None, "http-foo"), Protocol::Http);
        assert_eq!(Protocol::of_port(Some(""), "grpc"), Protocol::Grpc);
    }

    #[test]
    fn classifies() {
        assert!(Protocol::Grpc.is_http() && Protocol::Grpc.is_http2());
        assert!(!Protocol::Http.is_http2());
        assert!(Protocol::Https.is_tls() && !Protocol::Https.is_http());
        assert!(Protocol::Unsupported.is_tcp());
    }
}
