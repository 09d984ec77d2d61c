//! The mesh model: services, workloads and the routing and traffic policy that apply to
//! them, as one immutable, indexed snapshot.
//!
//! The model speaks of the mesh, not of YAML: sources (a config folder today, Kubernetes
//! later) turn their resources into a [`Snapshot`], and the xDS translation reads only
//! the snapshot. A snapshot never changes; a config change builds a new one.

pub mod build;
pub mod host;
pub mod mesh;
pub mod policy;
pub mod routing;
pub mod scope;
pub mod security;
pub mod service;
pub mod snapshot;

pub use host::Hostname;
pub use mesh::{MeshSettings, OutboundPolicy, PathNormalization};
pub use policy::{
    CertificateFiles, ClientTls, ConnectionPool, ConsistentHash, DestinationPolicy, HashCookie,
    HashKey, HashTable, Http2Keepalive, LayeredPolicy, LoadBalancer, LoadBalancing, OriginatedTls,
    OutlierDetection, ServerVerification, Subset, TcpKeepalive, TrafficPolicy, Warmup,
};
pub use routing::{
    AbortWith, ConnectionMatch, CorsPolicy, DirectResponse, Fault, FaultAbort, FaultDelay,
    HeaderChanges, HeaderOperations, HttpRouteRule, MESH_GATEWAY, Mirror, Redirect, RedirectPort,
    RequestMatch, Retries, RetryPolicy, Rewrite, RouteDestination, Share, SourceMatch, StringMatch,
    TcpRouteRule, VirtualRoutes,
};
pub use scope::{EgressHost, EgressScope, SidecarScope};
pub use security::{
    AuthorizationAction, AuthorizationPolicies, AuthorizationPolicy, ExtAuthzApi, ExtAuthzProvider,
    HttpCheck, JwksSource, JwtRule, MtlsMode, PeerAuthentications, PeerPolicy,
    RequestAuthenticationPolicy, RequestAuthentications,
};
pub use service::{Address, Endpoint, Protocol, Resolution, Service, ServicePort, Workload};
pub use snapshot::Snapshot;
