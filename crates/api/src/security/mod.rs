//! Istio `security.istio.io` resource specs, field for field as in Istio's CRDs.
//!
//! As for networking, every struct refuses unknown fields.

mod authorization_policy;
mod peer_authentication;
mod request_authentication;

pub use authorization_policy::*;
pub use peer_authentication::*;
pub use request_authentication::*;

/// The API group of these kinds.
pub const GROUP: &str = "security.istio.io";

/// The versions of [`GROUP`] Bosun reads (the spec shapes are the same in both).
pub const VERSIONS: [&str; 2] = ["v1", "v1beta1"];
