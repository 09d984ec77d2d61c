//! `WorkloadEntry`: one instance of a workload outside Kubernetes (a VM, or a local process).

use std::collections::BTreeMap;

use serde::Deserialize;

/// The `spec` of a WorkloadEntry, also the shape of a ServiceEntry's inline endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkloadEntry {
    /// IP address, DNS name, or `unix://` socket path.
    pub address: Option<String>,
    /// Port name → port number. Kept wide so out-of-range values get Istio's message.
    #[serde(default)]
    pub ports: BTreeMap<String, u32>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub network: Option<String>,
    pub locality: Option<String>,
    pub weight: Option<u32>,
    pub service_account: Option<String>,
}

impl WorkloadEntry {
    /// The address, or `""` when unset.
    pub fn address(&self) -> &str {
        self.address.as_deref().unwrap_or_default()
    }
}
