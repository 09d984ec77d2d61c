//! The HTTP data path: serving downstream connections and forwarding requests.

mod connection;
mod connection_manager;
pub mod headers;
mod server;

pub use server::serve;
