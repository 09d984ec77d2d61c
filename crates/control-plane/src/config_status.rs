//! What the control plane made of its config folder, for the debug endpoint and logs.

use std::time::SystemTime;

/// One loaded resource, as shown to operators.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ResourceSummary {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// `file:line` where the resource starts.
    pub origin: String,
}

/// The outcome of the latest load of the folder.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
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

impl ConfigStatus {
    /// This status with a failed reload on top: what is served is unchanged (same
    /// generation and resources), and the failure is the first error until a reload
    /// succeeds.
    pub fn with_reload_failure(&self, failure: &str) -> Self {
        let mut status = self.clone();
        status
            .errors
            .retain(|error| !error.starts_with(RELOAD_FAILED));
        status.errors.insert(
            0,
            format!("{RELOAD_FAILED}: {failure}; serving the last good config"),
        );
        status
    }
}

/// How a failed reload's error starts.
const RELOAD_FAILED: &str = "config reload failed";

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
