//! The HTTP data path: serving downstream connections and forwarding requests.

mod connection;
mod connection_manager;
mod control_flood;
mod head_timeout;
pub mod path;
mod server;
pub mod upgrade;
mod watched;
mod wind_down;

pub use server::serve;
