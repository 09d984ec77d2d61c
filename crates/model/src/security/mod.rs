//! Who may talk to a workload: how its ports take connections (PeerAuthentication) and
//! which requests its sidecar lets through (AuthorizationPolicy).

mod authentication;
mod authorization;
mod ext_authz;
mod peer;

pub use authentication::{
    JwksSource, JwtRule, RequestAuthenticationPolicy, RequestAuthentications,
};
pub use authorization::{AuthorizationAction, AuthorizationPolicies, AuthorizationPolicy};
pub use ext_authz::{DEFAULT_CHECK_TIMEOUT, ExtAuthzApi, ExtAuthzProvider, HttpCheck};
pub use peer::{MtlsMode, PeerAuthentications, PeerPolicy};
