//! Building blocks for tests that run real pieces: an ADS server on a free port, a real
//! Envoy process, a tiny HTTP upstream and client. Enabled by the `testing` feature.

mod ads;
mod envoy;
mod http;
mod mesh;

pub use ads::AdsTestServer;
pub use envoy::{EnvoyError, EnvoyProcess, envoy_binary};
pub use http::{HttpError, HttpUpstream, http_get};
pub use mesh::generated_mesh;
