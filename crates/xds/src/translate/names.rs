//! istiod's resource names, shared by the builders.

use bosun_model::Hostname;

/// `outbound|<port>|<subset>|<host>`, Istio's outbound cluster name.
pub fn outbound_cluster_name(port: u16, subset: Option<&str>, host: &Hostname) -> String {
    format!("outbound|{port}|{}|{host}", subset.unwrap_or(""))
}

/// `inbound|<port>||`, Istio's inbound cluster name.
pub fn inbound_cluster_name(port: u16) -> String {
    format!("inbound|{port}||")
}

pub const VIRTUAL_OUTBOUND_LISTENER: &str = "virtualOutbound";
pub const OUTBOUND_ROUTE_CONFIG: &str = "outbound";
