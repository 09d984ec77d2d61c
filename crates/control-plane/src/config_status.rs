//! What the control plane made of its config folder, for the debug endpoint and logs.

use std::time::SystemTime;

/// One loaded resource, as shown to operators.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ResourceSummary {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// `file:line` where the resource starts.
    pub origin: String,
}

/// The outcome of the latest load of the folder.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ConfigStatus {
    /// Increments with every load that changed what proxies get.
    pub generation: u64,
    /// Seconds since the Unix epoch of the latest load.
    pub loaded_at: u64,
    pub resources: Vec<ResourceSummary>,
    /// Refused resources and files (each names the resource, `file:line` and the reason).
    pub errors: Vec<String>,
    /// Accepted, but with fields or kinds this version does not honour yet.
    pub warnings: Vec<String>,
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
