//! Bosun's view of Istio configuration.
//!
//! Turns a folder of YAML files into typed resources that remember where they were read
//! ([`load_dir`]), checks them the way Istio does ([`validate`]), and lists the fields that
//! are set but not yet acted on by Bosun ([`unsupported_fields`]).
//!
//! ```
//! use std::path::Path;
//!
//! let yaml = "
//! apiVersion: networking.istio.io/v1
//! kind: VirtualService
//! metadata:
//!   name: reviews
//! spec:
//!   hosts: [reviews]
//!   http:
//!   - route:
//!     - destination: {host: reviews, subset: v1}
//! ";
//! let loaded = bosun_api::load_str(yaml, Path::new("reviews.yaml"));
//! assert!(loaded.errors.is_empty());
//! let resource = &loaded.resources[0];
//! assert_eq!(resource.origin().to_string(), "reviews.yaml:2");
//! assert!(bosun_api::validate(resource).is_empty());
//! ```

pub mod duration;
mod extension_providers;
mod loader;
pub mod local;
pub mod mesh;
pub mod meta;
pub mod networking;
pub mod origin;
pub mod protocol;
mod resource;
pub mod security;
mod unsupported;
pub mod validation;

pub use duration::{Duration, DurationError, parse_duration};
pub use loader::{
    LoadDirError, LoadError, LoadErrorKind, LoadResult, MeshConfigLoad, load_dir, load_mesh_config,
    load_str,
};
pub use local::{LocalWorkload, ProxyKind};
pub use meta::{Config, DEFAULT_NAMESPACE, ObjectMeta, ResourceRef};
pub use networking::{LoadBalancerSimple, StringMatch};
pub use origin::Origin;
pub use protocol::Protocol;
pub use resource::Resource;
pub use unsupported::unsupported_fields;
pub use validation::{Severity, ValidationMessage, validate};
