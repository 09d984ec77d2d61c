//! Istio `networking.istio.io` resource specs, field for field as in Istio's CRDs.
//!
//! Every struct refuses unknown fields, so a typo (`weigth`) is an error naming the
//! field rather than a silently ignored setting.

mod common;
mod destination_rule;
mod service_entry;
mod sidecar;
mod virtual_service;
mod workload_entry;

pub use common::*;
pub use destination_rule::*;
pub use service_entry::*;
pub use sidecar::*;
pub use virtual_service::*;
pub use workload_entry::*;

/// The API group of these kinds.
pub const GROUP: &str = "networking.istio.io";

/// The versions of [`GROUP`] Bosun reads (the spec shapes are the same in all three).
pub const VERSIONS: [&str; 3] = ["v1", "v1beta1", "v1alpha3"];
