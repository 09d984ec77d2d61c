//! Traffic policy for a destination, from DestinationRules.

use std::collections::BTreeMap;

use crate::host::Hostname;

/// Istio's simple load balancers. The default is LEAST_REQUEST, as in Istio since 1.14.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub enum LoadBalancer {
    RoundRobin,
    #[default]
    LeastRequest,
    Random,
}

/// A named group of a service's endpoints, selected by labels.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Subset {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// A subset's own load balancer overrides the rule's.
    pub load_balancer: Option<LoadBalancer>,
}

/// The DestinationRule that applies to a host.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DestinationPolicy {
    pub source: String,
    pub host: Hostname,
    pub load_balancer: Option<LoadBalancer>,
    pub subsets: Vec<Subset>,
}

impl DestinationPolicy {
    pub fn subset(&self, name: &str) -> Option<&Subset> {
        self.subsets.iter().find(|subset| subset.name == name)
    }
}
