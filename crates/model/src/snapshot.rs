//! One immutable view of the mesh, indexed for the questions translation asks.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::host::Hostname;
use crate::policy::{DestinationPolicy, LoadBalancer};
use crate::routing::VirtualRoutes;
use crate::service::{Endpoint, Service, ServicePort, Workload, selects};

/// The mesh at one moment. Built once per config change, then only read.
#[derive(Debug, Default, serde::Serialize)]
pub struct Snapshot {
    services: BTreeMap<Hostname, Arc<Service>>,
    workloads: Vec<Arc<Workload>>,
    routes: BTreeMap<Hostname, Arc<VirtualRoutes>>,
    policies: BTreeMap<Hostname, Arc<DestinationPolicy>>,
}

/// An endpoint resolved for one service port: where to connect and with what weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedEndpoint {
    pub address: IpAddr,
    pub port: u16,
    pub weight: u32,
}

impl Snapshot {
    /// Assembles a snapshot. The builder has already resolved conflicts (one service,
    /// one VirtualService and one DestinationRule per host).
    pub fn new(
        services: BTreeMap<Hostname, Arc<Service>>,
        workloads: Vec<Arc<Workload>>,
        routes: BTreeMap<Hostname, Arc<VirtualRoutes>>,
        policies: BTreeMap<Hostname, Arc<DestinationPolicy>>,
    ) -> Self {
        Self {
            services,
            workloads,
            routes,
            policies,
        }
    }

    pub fn services(&self) -> impl Iterator<Item = &Arc<Service>> {
        self.services.values()
    }

    pub fn service(&self, host: &Hostname) -> Option<&Arc<Service>> {
        self.services.get(host)
    }

    pub fn workloads(&self) -> &[Arc<Workload>] {
        &self.workloads
    }

    pub fn workload(&self, namespace: &str, name: &str) -> Option<&Arc<Workload>> {
        self.workloads
            .iter()
            .find(|workload| workload.namespace == namespace && workload.name == name)
    }

    /// The VirtualService routing for `host`, if any.
    pub fn routes_for(&self, host: &Hostname) -> Option<&Arc<VirtualRoutes>> {
        self.routes.get(host)
    }

    /// The DestinationRule for `host`, if any.
    pub fn policy_for(&self, host: &Hostname) -> Option<&Arc<DestinationPolicy>> {
        self.policies.get(host)
    }

    /// The load balancer for a host's subset (the subset's own, else the rule's).
    pub fn load_balancer(&self, host: &Hostname, subset: Option<&str>) -> LoadBalancer {
        let Some(policy) = self.policy_for(host) else {
            return LoadBalancer::default();
        };
        subset
            .and_then(|name| policy.subset(name))
            .and_then(|subset| subset.load_balancer)
            .or(policy.load_balancer)
            .unwrap_or_default()
    }

    /// Every endpoint of `service` on `port`, limited to `subset` when given. An unknown
    /// subset has no endpoints (Envoy then answers 503, as Istio does).
    pub fn endpoints(
        &self,
        service: &Service,
        port: &ServicePort,
        subset: Option<&str>,
    ) -> Vec<ResolvedEndpoint> {
        let subset_labels = match subset {
            None => None,
            Some(name) => match self
                .policy_for(&service.hostname)
                .and_then(|policy| policy.subset(name))
            {
                Some(subset) => Some(&subset.labels),
                None => return Vec::new(),
            },
        };
        let in_subset = |endpoint: &Endpoint| {
            subset_labels.is_none_or(|labels| selects(labels, &endpoint.labels))
        };
        let selected = service.workload_selector.as_ref().map(|selector| {
            self.workloads
                .iter()
                .filter(|workload| {
                    workload.namespace == service.namespace && selects(selector, &workload.labels)
                })
                .map(|workload| Endpoint::from_workload(workload))
                .collect::<Vec<_>>()
        });
        selected
            .iter()
            .flatten()
            .chain(service.inline_endpoints.iter())
            .filter(|endpoint| in_subset(endpoint))
            .map(|endpoint| ResolvedEndpoint {
                address: endpoint.address,
                port: endpoint.port_for(port),
                weight: endpoint.weight.max(1),
            })
            .collect()
    }
}
