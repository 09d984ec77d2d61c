//! `PeerAuthentication`: whether a workload's ports take mutual TLS, plaintext, or both.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use crate::networking::MatchLabelsSelector;

/// The `spec` of a PeerAuthentication.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PeerAuthentication {
    /// The workloads it applies to; none: its namespace (or, in the root namespace, the
    /// mesh).
    pub selector: Option<MatchLabelsSelector>,
    pub mtls: Option<MutualTls>,
    /// Per workload port (the port the workload listens on, written as a string key).
    pub port_level_mtls: Option<BTreeMap<String, MutualTls>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MutualTls {
    #[serde(default)]
    pub mode: MutualTlsMode,
}

/// How a port takes connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum MutualTlsMode {
    /// Inherit from the parent (namespace, then mesh); PERMISSIVE at the top.
    #[default]
    Unset,
    /// Plaintext only.
    Disable,
    /// Mutual TLS and plaintext alike.
    Permissive,
    /// Mutual TLS only.
    Strict,
}

impl MutualTlsMode {
    const NAMES: [(&'static str, MutualTlsMode); 4] = [
        ("UNSET", MutualTlsMode::Unset),
        ("DISABLE", MutualTlsMode::Disable),
        ("PERMISSIVE", MutualTlsMode::Permissive),
        ("STRICT", MutualTlsMode::Strict),
    ];

    pub fn as_str(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, mode)| *mode == self)
            .map_or("UNSET", |(name, _)| name)
    }
}

impl TryFrom<String> for MutualTlsMode {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::NAMES
            .iter()
            .find(|(name, _)| *name == value)
            .map(|(_, mode)| *mode)
            .ok_or_else(|| {
                format!(
                    "Unsupported value: {value:?}: supported values: \"UNSET\", \"DISABLE\", \"PERMISSIVE\", \"STRICT\""
                )
            })
    }
}

impl fmt::Display for MutualTlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
