//! PeerAuthentication, composed as istiod composes it: the mesh policy (root namespace,
//! no selector), then the namespace's, then the workload's, each one setting the mode
//! unless it leaves it UNSET; a workload policy's `portLevelMtls` last.

use std::collections::BTreeMap;

use crate::service::selects;

/// How a workload port takes connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum MtlsMode {
    /// Plaintext only.
    Disable,
    /// Mutual TLS and plaintext (Istio's default).
    Permissive,
    /// Mutual TLS only: a plaintext caller is refused at the connection.
    Strict,
}

impl MtlsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            MtlsMode::Disable => "DISABLE",
            MtlsMode::Permissive => "PERMISSIVE",
            MtlsMode::Strict => "STRICT",
        }
    }
}

/// One PeerAuthentication. `mode: None` is UNSET: inherit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PeerPolicy {
    pub source: String,
    pub namespace: String,
    /// `None` or empty: the namespace (the mesh, in the root namespace).
    pub selector: Option<BTreeMap<String, String>>,
    pub mode: Option<MtlsMode>,
    /// `portLevelMtls` by workload port; `None` is UNSET: the policy's mode.
    pub ports: BTreeMap<u16, Option<MtlsMode>>,
}

impl PeerPolicy {
    fn is_namespace_wide(&self) -> bool {
        self.selector.as_ref().is_none_or(BTreeMap::is_empty)
    }
}

/// Every PeerAuthentication of the mesh, in load order (istiod's creation order: the
/// first of two at one level wins).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PeerAuthentications {
    policies: Vec<PeerPolicy>,
}

impl PeerAuthentications {
    pub fn new(policies: Vec<PeerPolicy>) -> Self {
        Self { policies }
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// The mode of `port` on a workload with `labels` in `namespace`.
    pub fn mode_for(
        &self,
        root_namespace: &str,
        namespace: &str,
        labels: &BTreeMap<String, String>,
        port: u16,
    ) -> MtlsMode {
        let mesh = self.first(|p| p.namespace == root_namespace && p.is_namespace_wide());
        let own_namespace = self.first(|p| {
            p.namespace == namespace && p.namespace != root_namespace && p.is_namespace_wide()
        });
        // istiod ignores workload policies in the root namespace.
        let workload = self.first(|p| {
            p.namespace == namespace
                && p.namespace != root_namespace
                && !p.is_namespace_wide()
                && p.selector.as_ref().is_some_and(|s| selects(s, labels))
        });
        let mut mode = MtlsMode::Permissive;
        for policy in [mesh, own_namespace, workload].into_iter().flatten() {
            if let Some(set) = policy.mode {
                mode = set;
            }
        }
        match workload.and_then(|policy| policy.ports.get(&port)) {
            Some(Some(port_mode)) => *port_mode,
            Some(None) | None => mode,
        }
    }

    /// The mode the namespace's (or else the mesh's) policy sets, for a client that
    /// cannot know the workload behind a service: istiod's best-effort guess, used by
    /// auto mTLS. `None` when neither sets one.
    pub fn namespace_mode(&self, root_namespace: &str, namespace: &str) -> Option<MtlsMode> {
        let mesh = self
            .first(|p| p.namespace == root_namespace && p.is_namespace_wide())
            .map(|p| p.mode.unwrap_or(MtlsMode::Permissive));
        let own = self
            .first(|p| {
                p.namespace == namespace && p.namespace != root_namespace && p.is_namespace_wide()
            })
            .map(|p| {
                p.mode
                    .unwrap_or_else(|| mesh.unwrap_or(MtlsMode::Permissive))
            });
        own.or(mesh)
    }

    fn first(&self, wanted: impl Fn(&PeerPolicy) -> bool) -> Option<&PeerPolicy> {
        self.policies.iter().find(|policy| wanted(policy))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(
        namespace: &str,
        selector: Option<(&str, &str)>,
        mode: Option<MtlsMode>,
    ) -> PeerPolicy {
        PeerPolicy {
            source: format!("{namespace}/p"),
            namespace: namespace.to_owned(),
            selector: selector.map(|(k, v)| BTreeMap::from([(k.to_owned(), v.to_owned())])),
            mode,
            ports: BTreeMap::new(),
        }
    }

    fn labels(app: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("app".to_owned(), app.to_owned())])
    }

    #[test]
    fn workload_over_namespace_over_mesh_and_unset_inherits() {
        use MtlsMode::*;
        let none = PeerAuthentications::default();
        assert_eq!(
            none.mode_for("istio-system", "ns1", &labels("b"), 80),
            Permissive
        );
        let mut workload = policy("ns1", Some(("app", "b")), None);
        workload.ports.insert(8080, Some(Disable));
        workload.ports.insert(9090, None);
        let all = PeerAuthentications::new(vec![
            policy("istio-system", None, Some(Strict)),
            policy("ns1", None, None),
            workload,
        ]);
        for (namespace, port, mode) in [
            ("ns1", 80, Strict),
            ("ns1", 8080, Disable),
            ("ns1", 9090, Strict),
            ("ns2", 80, Strict),
        ] {
            assert_eq!(
                all.mode_for("istio-system", namespace, &labels("b"), port),
                mode,
                "{namespace}:{port}"
            );
        }
        assert_eq!(all.namespace_mode("istio-system", "ns1"), Some(Strict));
        let disabled = PeerAuthentications::new(vec![
            policy("ns1", None, Some(Disable)),
            policy("ns1", None, Some(Strict)),
            policy("istio-system", Some(("app", "b")), Some(Strict)),
        ]);
        // The first namespace policy wins; a selector in the root namespace is ignored.
        assert_eq!(
            disabled.mode_for("istio-system", "ns1", &labels("b"), 80),
            Disable
        );
        assert_eq!(disabled.namespace_mode("istio-system", "ns2"), None);
    }
}
