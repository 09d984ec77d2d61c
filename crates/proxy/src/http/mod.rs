//! The HTTP data path: serving downstream connections and forwarding requests.

mod forward;
pub mod headers;
mod server;

pub use server::serve;
