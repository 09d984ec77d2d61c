//! `LocalWorkload` (`bosun.dev/v1alpha1`): how `bosun up` starts a process for a WorkloadEntry.
//!
//! See `docs/design/local-mesh.md`, "Launch file".

use std::collections::BTreeMap;

use serde::Deserialize;

/// The API group and version of [`LocalWorkload`].
pub const LOCAL_API_VERSION: &str = "bosun.dev/v1alpha1";

/// The `spec` of a LocalWorkload.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LocalWorkload {
    /// The WorkloadEntry (same namespace) this process is an instance of.
    pub workload_entry: String,
    /// Which sidecar runs beside the app.
    #[serde(default)]
    pub proxy: ProxyKind,
    /// The app's command line; `{bosun}` stands for the running `bosun` binary.
    #[serde(default)]
    pub command: Vec<String>,
    /// Extra environment for the app.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// WorkloadEntry port name → app port. Unlisted ports use `port + 10000`.
    #[serde(default)]
    pub app_ports: BTreeMap<String, u16>,
}

/// The sidecar of a local workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyKind {
    /// Bosun's own proxy.
    #[default]
    Bosun,
    /// A real Envoy, configured by the same control plane.
    Envoy,
    /// No sidecar: the app is reached directly.
    None,
}

/// The app port used for a workload port that `appPorts` does not list.
pub const APP_PORT_OFFSET: u16 = 10000;

impl LocalWorkload {
    /// The app port for a WorkloadEntry port: `appPorts[name]`, else `number + 10000`.
    /// `None` when the default would overflow a port number.
    pub fn app_port(&self, port_name: &str, port_number: u16) -> Option<u16> {
        match self.app_ports.get(port_name) {
            Some(port) => Some(*port),
            None => port_number.checked_add(APP_PORT_OFFSET),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_port_defaults_to_port_plus_ten_thousand() {
        let mut workload = LocalWorkload::default();
        assert_eq!(workload.app_port("http", 9080), Some(19080));
        workload.app_ports.insert("http".into(), 8000);
        assert_eq!(workload.app_port("http", 9080), Some(8000));
        assert_eq!(workload.app_port("big", 60000), None);
    }
}
