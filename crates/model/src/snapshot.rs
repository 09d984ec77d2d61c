//! One immutable view of the mesh, indexed for the questions translation asks.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::host::Hostname;
use crate::mesh::MeshSettings;
use crate::policy::{ClientTls, DestinationPolicy, TrafficPolicy};
use crate::routing::{SourceMatch, VirtualRoutes};
use crate::scope::{self, SidecarScope};
use crate::security::{
    AuthorizationAction, AuthorizationPolicies, AuthorizationPolicy, ExtAuthzProvider, JwtRule,
    MtlsMode, PeerAuthentications, RequestAuthentications,
};
use crate::service::{Address, Service, ServicePort, Workload, port_on, selects};

/// The mesh at one moment. Built once per config change, then only read.
#[derive(Debug, Default, serde::Serialize)]
pub struct Snapshot {
    services: BTreeMap<Hostname, Arc<Service>>,
    workloads: Vec<Arc<Workload>>,
    /// Workloads by (namespace, label key, label value), so a selector looks at the
    /// workloads carrying one of its labels instead of every workload of the mesh.
    #[serde(skip)]
    workloads_by_label: HashMap<(String, String, String), Vec<usize>>,
    /// Workloads by (namespace, name): every proxy looks up its own.
    #[serde(skip)]
    workloads_by_name: HashMap<(String, String), usize>,
    routes: BTreeMap<Hostname, Arc<VirtualRoutes>>,
    policies: BTreeMap<Hostname, Arc<DestinationPolicy>>,
    /// The Sidecar resources, in load order.
    sidecars: Vec<Arc<SidecarScope>>,
    peer_authentications: PeerAuthentications,
    authorization: AuthorizationPolicies,
    authentication: RequestAuthentications,
    mesh: MeshSettings,
}

/// An endpoint resolved for one service port: where to connect and with what weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedEndpoint {
    pub address: Address,
    pub port: u16,
    pub weight: u32,
    /// Whether the endpoint's sidecar takes Istio mutual TLS.
    pub mutual_tls: bool,
    /// The workload behind it, when a WorkloadEntry is (not for ServiceEntry endpoints).
    pub workload: Option<Arc<Workload>>,
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
        let mut workloads_by_label: HashMap<(String, String, String), Vec<usize>> = HashMap::new();
        let mut workloads_by_name = HashMap::new();
        for (index, workload) in workloads.iter().enumerate() {
            workloads_by_name
                .entry((workload.namespace.clone(), workload.name.clone()))
                .or_insert(index);
            for (key, value) in &workload.labels {
                workloads_by_label
                    .entry((workload.namespace.clone(), key.clone(), value.clone()))
                    .or_default()
                    .push(index);
            }
        }
        Self {
            services,
            workloads,
            workloads_by_label,
            workloads_by_name,
            routes,
            policies,
            sidecars: Vec::new(),
            peer_authentications: PeerAuthentications::default(),
            authorization: AuthorizationPolicies::default(),
            authentication: RequestAuthentications::default(),
            mesh: MeshSettings::default(),
        }
    }

    /// The snapshot with the mesh's Sidecar resources.
    pub fn with_sidecars(mut self, sidecars: Vec<Arc<SidecarScope>>) -> Self {
        self.sidecars = sidecars;
        self
    }

    /// The snapshot with the mesh's PeerAuthentications and AuthorizationPolicies.
    pub fn with_security(
        mut self,
        peer_authentications: PeerAuthentications,
        authorization: AuthorizationPolicies,
    ) -> Self {
        self.peer_authentications = peer_authentications;
        self.authorization = authorization;
        self
    }

    /// The snapshot with the mesh's RequestAuthentications (and the key sets fetched).
    pub fn with_request_authentications(mut self, authentication: RequestAuthentications) -> Self {
        self.authentication = authentication;
        self
    }

    /// The snapshot with the key sets fetched for its rules' `jwksUri`s.
    pub fn with_fetched_jwks(mut self, fetched: BTreeMap<String, Result<String, String>>) -> Self {
        self.authentication = self.authentication.with_fetched(fetched);
        self
    }

    pub fn request_authentications(&self) -> &RequestAuthentications {
        &self.authentication
    }

    /// The JWT rules on the sidecar of a workload, in load order.
    pub fn jwt_rules(&self, namespace: &str, labels: &BTreeMap<String, String>) -> Vec<&JwtRule> {
        self.authentication
            .rules_for(&self.mesh.root_namespace, namespace, labels)
    }

    /// How `port` of a workload with `labels` in `namespace` takes connections.
    pub fn mtls_mode(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
        port: u16,
    ) -> MtlsMode {
        self.peer_authentications
            .mode_for(&self.mesh.root_namespace, namespace, labels, port)
    }

    /// The mode a namespace's (or the mesh's) PeerAuthentication sets, if any.
    pub fn namespace_mtls_mode(&self, namespace: &str) -> Option<MtlsMode> {
        self.peer_authentications
            .namespace_mode(&self.mesh.root_namespace, namespace)
    }

    /// The AuthorizationPolicies on the sidecar of a workload, in load order.
    pub fn authorization_policies(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> Vec<&Arc<AuthorizationPolicy>> {
        self.authorization
            .for_workload(&self.mesh.root_namespace, namespace, labels)
    }

    pub fn sidecars(&self) -> &[Arc<SidecarScope>] {
        &self.sidecars
    }

    /// The Sidecar that applies to a proxy with `labels` in `namespace`, if any.
    pub fn sidecar_for(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> Option<&Arc<SidecarScope>> {
        scope::choose(&self.sidecars, namespace, labels, &self.mesh.root_namespace)
    }

    /// The snapshot under `mesh`'s mesh-wide settings instead of Istio's defaults.
    pub fn with_mesh(mut self, mesh: MeshSettings) -> Self {
        self.mesh = mesh;
        self
    }

    /// The mesh-wide settings (Istio's MeshConfig).
    pub fn mesh(&self) -> &MeshSettings {
        &self.mesh
    }

    /// The external authorizer named `name` and the service that reaches it, as istiod
    /// looks it up; `Err` says why a CUSTOM policy naming it cannot ask it.
    pub fn ext_authz(&self, name: &str) -> Result<(&ExtAuthzProvider, &Arc<Service>), String> {
        let Some(provider) = self.mesh.ext_authz.iter().find(|p| p.name == name) else {
            let known: Vec<&str> = self
                .mesh
                .ext_authz
                .iter()
                .map(|p| p.name.as_str())
                .collect();
            return Err(format!(
                "the mesh config has no external authorizer named {name:?} (extensionProviders: {known:?})"
            ));
        };
        let host = Hostname::new(provider.host());
        let namespace = provider
            .service
            .split_once('/')
            .map(|(namespace, _)| namespace);
        let service = self
            .services
            .get(&host)
            .filter(|service| namespace.is_none_or(|namespace| service.namespace == namespace))
            .ok_or_else(|| {
                format!(
                    "could not find service {} of provider {name:?} in the registry",
                    provider.service
                )
            })?;
        Ok((provider, service))
    }

    /// Why CUSTOM policies cannot ask their authorizer: each such policy denies the
    /// requests its rules match, as istiod makes it.
    pub fn custom_policy_problems(&self) -> Vec<String> {
        self.authorization
            .all()
            .iter()
            .filter(|policy| policy.action == AuthorizationAction::Custom)
            .filter_map(|policy| {
                let provider = policy.provider.as_deref().unwrap_or_default();
                let reason = self.ext_authz(provider).err()?;
                Some(format!(
                    "AuthorizationPolicy {}/{} ({}): {reason}; the requests its rules match are denied until it is fixed",
                    policy.namespace, policy.name, policy.origin
                ))
            })
            .collect()
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
        self.workloads_by_name
            .get(&(namespace.to_string(), name.to_string()))
            .map(|index| &self.workloads[*index])
    }

    /// The VirtualService routing for `host`, if any.
    pub fn routes_for(&self, host: &Hostname) -> Option<&Arc<VirtualRoutes>> {
        self.routes.get(host)
    }

    /// The distinct caller conditions (`sourceLabels`, `sourceNamespace`, `gateways`) of
    /// every VirtualService match, in a stable order: what makes one proxy's routes
    /// differ from another's in the same namespace.
    pub fn source_matches(&self) -> Vec<&SourceMatch> {
        let mut seen: BTreeSet<&SourceMatch> = BTreeSet::new();
        for routes in self.routes.values() {
            let http = routes
                .http
                .iter()
                .flat_map(|rule| rule.matches.iter().map(|request| &request.source));
            let tcp = routes
                .tcp
                .iter()
                .flat_map(|rule| rule.matches.iter().map(|condition| &condition.source));
            seen.extend(http.chain(tcp).filter(|source| !source.is_any()));
        }
        seen.into_iter().collect()
    }

    /// The DestinationRule for `host`, if any.
    pub fn policy_for(&self, host: &Hostname) -> Option<&Arc<DestinationPolicy>> {
        self.policies.get(host)
    }

    /// The traffic policy for `port` of a host, or of its subset, as istiod merges a
    /// DestinationRule's levels (none: Istio's defaults throughout).
    pub fn traffic_policy(
        &self,
        host: &Hostname,
        port: u16,
        subset: Option<&str>,
    ) -> TrafficPolicy {
        self.policy_for(host)
            .map(|policy| policy.effective(port, subset))
            .unwrap_or_default()
    }

    /// The workloads of `namespace` that carry every label of `selector`.
    fn selected_workloads(
        &self,
        namespace: &str,
        selector: &BTreeMap<String, String>,
    ) -> Vec<&Arc<Workload>> {
        let in_namespace = |workload: &&Arc<Workload>| {
            workload.namespace == namespace && selects(selector, &workload.labels)
        };
        // The shortest list among the selector's labels holds every candidate.
        let shortest = selector
            .iter()
            .map(|(key, value)| {
                self.workloads_by_label
                    .get(&(namespace.to_string(), key.clone(), value.clone()))
                    .map_or(&[][..], Vec::as_slice)
            })
            .min_by_key(|candidates| candidates.len());
        match shortest {
            Some(candidates) => candidates
                .iter()
                .map(|index| &self.workloads[*index])
                .filter(in_namespace)
                .collect(),
            // An empty selector selects every workload of the namespace.
            None => self.workloads.iter().filter(in_namespace).collect(),
        }
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
        let tls = self
            .policy_for(&service.hostname)
            .and_then(|policy| policy.tls(port.number, subset));
        // istiod's endpoint builder: a DestinationRule's tls decides; else an endpoint
        // whose sidecar takes mTLS, unless its own PeerAuthentication disables it there.
        let takes_mtls = |sidecar: bool,
                          namespace: &str,
                          labels: &BTreeMap<String, String>,
                          target: u16| match &tls {
            Some(tls) => matches!(tls, ClientTls::IstioMutual { .. }),
            None => sidecar && self.mtls_mode(namespace, labels, target) != MtlsMode::Disable,
        };
        let selected = self.workloads_of(service);
        // Workloads and the service's own endpoints alike: address, ports, labels, weight.
        let workloads = selected.into_iter().map(|w| {
            let endpoint = (
                Address::Ip(w.address),
                &w.ports,
                &w.labels,
                w.weight,
                w.mutual_tls,
            );
            (endpoint, Some(w))
        });
        let inline = service.inline_endpoints.iter().map(|e| {
            let endpoint = (
                e.address.clone(),
                &e.ports,
                &e.labels,
                e.weight,
                e.mutual_tls,
            );
            (endpoint, None)
        });
        workloads
            .chain(inline)
            .filter(|((_, _, labels, _, _), _)| {
                subset_labels.is_none_or(|wanted| selects(wanted, labels))
            })
            .map(|((address, ports, labels, weight, mutual_tls), workload)| {
                let target = port_on(ports, port);
                ResolvedEndpoint {
                    address,
                    port: target,
                    weight: weight.max(1),
                    mutual_tls: takes_mtls(mutual_tls, &service.namespace, labels, target),
                    workload: workload.cloned(),
                }
            })
            .collect()
    }

    /// The workloads a service's selector picks (none when it lists its endpoints).
    fn workloads_of(&self, service: &Service) -> Vec<&Arc<Workload>> {
        service
            .workload_selector
            .as_ref()
            .map(|selector| self.selected_workloads(&service.namespace, selector))
            .unwrap_or_default()
    }

    /// The service accounts of the service's endpoints that take mutual TLS: the
    /// identities a client accepts from the service's side of a connection (Istio's
    /// "service accounts of a service"). Entries without one run as `default`.
    pub fn service_accounts(&self, service: &Service) -> BTreeSet<String> {
        let workloads = self
            .workloads_of(service)
            .into_iter()
            .filter(|w| w.mutual_tls)
            .map(|w| w.service_account.as_str());
        let inline = service
            .inline_endpoints
            .iter()
            .filter(|e| e.mutual_tls)
            .map(|e| e.service_account.as_deref().unwrap_or("default"));
        workloads.chain(inline).map(str::to_owned).collect()
    }
}
