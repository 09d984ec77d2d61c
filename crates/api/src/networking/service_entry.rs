//! `ServiceEntry`: adds a service (hosts, ports, endpoints) to the mesh's registry.

use serde::Deserialize;

use super::common::WorkloadSelector;
use crate::protocol::Protocol;

/// The `spec` of a ServiceEntry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceEntry {
    pub hosts: Vec<String>,
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    pub location: Option<Location>,
    pub resolution: Option<Resolution>,
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    pub workload_selector: Option<WorkloadSelector>,
    #[serde(default)]
    pub export_to: Vec<String>,
    #[serde(default)]
    pub subject_alt_names: Vec<String>,
}

impl ServiceEntry {
    /// The resolution, with Istio's default (`NONE`) when unset.
    pub fn resolution(&self) -> Resolution {
        self.resolution.unwrap_or(Resolution::None)
    }

    /// The location, with Istio's default (`MESH_EXTERNAL`) when unset.
    pub fn location(&self) -> Location {
        self.location.unwrap_or(Location::MeshExternal)
    }
}

/// A port of the service.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServicePort {
    /// Kept wide so out-of-range values get Istio's validation message.
    pub number: u32,
    pub name: String,
    pub protocol: Option<String>,
    pub target_port: Option<u32>,
}

impl ServicePort {
    /// The protocol: declared, else implied by the name prefix (`http-web`), as in Istio.
    pub fn protocol(&self) -> Protocol {
        Protocol::of_port(self.protocol.as_deref(), &self.name)
    }
}

/// Whether the service is part of the mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Location {
    MeshExternal,
    MeshInternal,
}

/// How the proxy finds the service's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Resolution {
    None,
    Static,
    Dns,
    DnsRoundRobin,
    DynamicDns,
}

impl Resolution {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Static => "STATIC",
            Self::Dns => "DNS",
            Self::DnsRoundRobin => "DNS_ROUND_ROBIN",
            Self::DynamicDns => "DYNAMIC_DNS",
        }
    }
}

/// An inline endpoint of a ServiceEntry (the same shape as a WorkloadEntry spec).
pub type Endpoint = super::workload_entry::WorkloadEntry;
