//! Which identities the CA signs: those the config's workloads run as.

use std::collections::{HashMap, HashSet};

use bosun_ca::Identity;
use bosun_model::Snapshot;

/// The service accounts the config's workloads run as, by namespace.
#[derive(Debug, Default)]
pub(crate) struct KnownIdentities(HashMap<String, HashSet<String>>);

impl KnownIdentities {
    pub(crate) fn of(snapshot: &Snapshot) -> Self {
        let mut known: HashMap<String, HashSet<String>> = HashMap::new();
        for workload in snapshot.workloads() {
            // Most workloads share a few accounts: copy each name once.
            let accounts = match known.get_mut(&workload.namespace) {
                Some(accounts) => accounts,
                None => known.entry(workload.namespace.clone()).or_default(),
            };
            if !accounts.contains(&workload.service_account) {
                accounts.insert(workload.service_account.clone());
            }
        }
        Self(known)
    }

    /// A workload may have its own identity, or its namespace's `default` account.
    ///
    /// On one machine callers are not authenticated (there is no platform token to check),
    /// so this only keeps identities to those the config declares.
    pub(crate) fn allows(&self, identity: &Identity) -> bool {
        self.0.get(&identity.namespace).is_some_and(|accounts| {
            identity.service_account == "default" || accounts.contains(&identity.service_account)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::IpAddr;
    use std::sync::Arc;

    use bosun_model::Workload;

    use super::*;

    fn workload(namespace: &str, account: &str) -> Arc<Workload> {
        Arc::new(Workload {
            name: format!("{namespace}-{account}"),
            namespace: namespace.to_string(),
            address: IpAddr::from([127, 0, 0, 1]),
            ports: BTreeMap::new(),
            labels: BTreeMap::new(),
            service_account: account.to_string(),
            mutual_tls: true,
            weight: 1,
        })
    }

    #[test]
    fn signs_declared_accounts_and_the_default_of_known_namespaces() {
        let snapshot = Snapshot::new(
            BTreeMap::new(),
            vec![workload("shop", "cart"), workload("shop", "cart")],
            BTreeMap::new(),
            BTreeMap::new(),
        );
        let known = KnownIdentities::of(&snapshot);
        let allows = |ns: &str, sa: &str| known.allows(&Identity::new("cluster.local", ns, sa));
        assert!(allows("shop", "cart"));
        assert!(allows("shop", "default"));
        assert!(!allows("shop", "admin"));
        assert!(!allows("bank", "default"));
        assert!(!allows("bank", "cart"));
    }
}
