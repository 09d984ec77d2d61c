//! istiod's resource names, shared by the builders.

use bosun_model::Hostname;

/// `outbound|<port>|<subset>|<host>`, Istio's outbound cluster name.
pub fn outbound_cluster_name(port: u16, subset: Option<&str>, host: &Hostname) -> String {
    format!("outbound|{port}|{}|{host}", subset.unwrap_or(""))
}

/// The port and host an outbound cluster (or load assignment) name is for:
/// [`outbound_cluster_name`] read back; `None` for any other name (PassthroughCluster).
pub fn parse_outbound_cluster_name(name: &str) -> Option<(u16, Hostname)> {
    let mut parts = name.splitn(4, '|');
    if parts.next()? != "outbound" {
        return None;
    }
    let port = parts.next()?.parse().ok()?;
    let _subset = parts.next()?;
    Some((port, Hostname::new(parts.next()?)))
}

/// `inbound|<port>||`, Istio's inbound cluster name.
pub fn inbound_cluster_name(port: u16) -> String {
    format!("inbound|{port}||")
}

pub const VIRTUAL_OUTBOUND_LISTENER: &str = "virtualOutbound";
pub const OUTBOUND_ROUTE_CONFIG: &str = "outbound";
