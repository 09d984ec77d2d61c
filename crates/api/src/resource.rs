//! The loaded resource: one of the kinds Bosun understands, or a kind it does not (yet).

use crate::local::LocalWorkload;
use crate::meta::{Config, ObjectMeta, ResourceRef};
use crate::networking::{DestinationRule, ServiceEntry, Sidecar, VirtualService, WorkloadEntry};
use crate::origin::Origin;
use crate::security::{AuthorizationPolicy, PeerAuthentication, RequestAuthentication};

/// A resource read from a configuration folder.
#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    VirtualService(Config<VirtualService>),
    DestinationRule(Config<DestinationRule>),
    ServiceEntry(Config<ServiceEntry>),
    WorkloadEntry(Config<WorkloadEntry>),
    Sidecar(Config<Sidecar>),
    LocalWorkload(Config<LocalWorkload>),
    PeerAuthentication(Config<PeerAuthentication>),
    AuthorizationPolicy(Config<AuthorizationPolicy>),
    RequestAuthentication(Config<RequestAuthentication>),
    /// A kind Bosun does not act on (Gateway, Telemetry, Deployment, ...).
    /// Kept, not dropped, so callers can say "not supported yet: kind X".
    Unsupported {
        kind: String,
        api_version: String,
        meta: ObjectMeta,
        origin: Origin,
    },
}

impl Resource {
    /// The `kind` as written in YAML.
    pub fn kind(&self) -> &str {
        match self {
            Self::VirtualService(_) => "VirtualService",
            Self::DestinationRule(_) => "DestinationRule",
            Self::ServiceEntry(_) => "ServiceEntry",
            Self::WorkloadEntry(_) => "WorkloadEntry",
            Self::Sidecar(_) => "Sidecar",
            Self::LocalWorkload(_) => "LocalWorkload",
            Self::PeerAuthentication(_) => "PeerAuthentication",
            Self::AuthorizationPolicy(_) => "AuthorizationPolicy",
            Self::RequestAuthentication(_) => "RequestAuthentication",
            Self::Unsupported { kind, .. } => kind,
        }
    }

    pub fn api_version(&self) -> &str {
        match self {
            Self::VirtualService(c) => &c.api_version,
            Self::DestinationRule(c) => &c.api_version,
            Self::ServiceEntry(c) => &c.api_version,
            Self::WorkloadEntry(c) => &c.api_version,
            Self::Sidecar(c) => &c.api_version,
            Self::LocalWorkload(c) => &c.api_version,
            Self::PeerAuthentication(c) => &c.api_version,
            Self::AuthorizationPolicy(c) => &c.api_version,
            Self::RequestAuthentication(c) => &c.api_version,
            Self::Unsupported { api_version, .. } => api_version,
        }
    }

    /// The API group: `apiVersion` without its version (`""` for core Kubernetes kinds).
    pub fn group(&self) -> &str {
        api_group(self.api_version())
    }

    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Self::VirtualService(c) => &c.meta,
            Self::DestinationRule(c) => &c.meta,
            Self::ServiceEntry(c) => &c.meta,
            Self::WorkloadEntry(c) => &c.meta,
            Self::Sidecar(c) => &c.meta,
            Self::LocalWorkload(c) => &c.meta,
            Self::PeerAuthentication(c) => &c.meta,
            Self::AuthorizationPolicy(c) => &c.meta,
            Self::RequestAuthentication(c) => &c.meta,
            Self::Unsupported { meta, .. } => meta,
        }
    }

    pub fn origin(&self) -> &Origin {
        match self {
            Self::VirtualService(c) => &c.origin,
            Self::DestinationRule(c) => &c.origin,
            Self::ServiceEntry(c) => &c.origin,
            Self::WorkloadEntry(c) => &c.origin,
            Self::Sidecar(c) => &c.origin,
            Self::LocalWorkload(c) => &c.origin,
            Self::PeerAuthentication(c) => &c.origin,
            Self::AuthorizationPolicy(c) => &c.origin,
            Self::RequestAuthentication(c) => &c.origin,
            Self::Unsupported { origin, .. } => origin,
        }
    }

    /// `Kind namespace/name`, for messages.
    pub fn reference(&self) -> ResourceRef {
        let meta = self.meta();
        ResourceRef {
            kind: self.kind().to_owned(),
            namespace: meta.namespace.clone(),
            name: meta.name.clone(),
        }
    }

    pub fn is_supported(&self) -> bool {
        !matches!(self, Self::Unsupported { .. })
    }
}

/// `networking.istio.io/v1` → `networking.istio.io`; `v1` → `""`.
pub(crate) fn api_group(api_version: &str) -> &str {
    api_version
        .rsplit_once('/')
        .map(|(group, _)| group)
        .unwrap_or_default()
}
