//! Who a route table is written for: its namespace (where short names resolve), its
//! labels (which caller conditions admit it) and the Sidecar that scopes it; and the
//! names it may use for a service port.

use std::collections::BTreeMap;

use bosun_model::{Service, SidecarScope, Snapshot, SourceMatch};

use crate::ProxyNode;

/// Who an outbound route table is written for, as istiod writes it per proxy: short names
/// like `reviews` resolve in its namespace, and matches with `sourceLabels`,
/// `sourceNamespace` or `gateways` are kept only where they admit it.
/// Under a Sidecar with egress hosts, only the service ports it admits are in the table,
/// and its `outboundTrafficPolicy` decides the catch-all.
#[derive(Debug, Clone, Copy)]
pub(super) struct Caller<'a> {
    pub namespace: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub sidecar: Option<&'a SidecarScope>,
}

impl<'a> Caller<'a> {
    pub fn of(snapshot: &'a Snapshot, node: &'a ProxyNode) -> Self {
        Caller {
            namespace: &node.namespace,
            labels: &node.labels,
            sidecar: snapshot
                .sidecar_for(&node.namespace, &node.labels)
                .map(|sidecar| sidecar.as_ref()),
        }
    }

    pub fn reaches(&self, service: &Service, port: u16) -> bool {
        self.sidecar
            .is_none_or(|sidecar| sidecar.admits(service, port))
    }

    pub fn admits(&self, source: &SourceMatch) -> bool {
        source.is_any() || source.admits_sidecar(self.labels, self.namespace)
    }

    /// What sets this caller's routes apart from others' in its namespace: which of the
    /// mesh's caller conditions admit it. Callers with the same view share one table.
    pub fn view(&self, conditions: &[SourceMatch]) -> String {
        let admitted: String = conditions
            .iter()
            .map(|source| if self.admits(source) { '1' } else { '0' })
            .collect();
        let mut view = self.namespace.to_string();
        if !admitted.is_empty() {
            view.push('/');
            view.push_str(&admitted);
        }
        if let Some(sidecar) = self.sidecar {
            view.push_str(" sidecar ");
            view.push_str(&sidecar.source);
        }
        view
    }
}

/// The names a client may use for a service port: `host:port` always; the bare names
/// for the service's first HTTP port (clients omit the port there, as with port 80);
/// and Istio's short names (`name.ns`, `name.ns.svc`, and `name` in the client's own
/// namespace).
pub(super) fn domains(
    service: &Service,
    port: u16,
    is_default: bool,
    proxy_namespace: &str,
) -> Vec<String> {
    let mut names = vec![service.hostname.to_string()];
    names.extend(service.hostname.short_names(proxy_namespace));
    let mut domains: Vec<String> = names.iter().map(|name| format!("{name}:{port}")).collect();
    if is_default {
        domains.extend(names);
    }
    domains
}
