//! Message types shared by several networking kinds.

use std::collections::BTreeMap;

use serde::Deserialize;

/// How a string is matched (Istio `StringMatch`): exactly one of `exact`, `prefix`, `regex`.
///
/// Regexes are RE2 and match the whole string, as in Envoy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    Regex(String),
}

impl StringMatch {
    /// The string, prefix or pattern.
    pub fn value(&self) -> &str {
        match self {
            Self::Exact(v) | Self::Prefix(v) | Self::Regex(v) => v,
        }
    }

    /// `exact`, `prefix` or `regex`: the YAML key, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Exact(_) => "exact",
            Self::Prefix(_) => "prefix",
            Self::Regex(_) => "regex",
        }
    }
}

/// A service (and optionally subset and port) traffic is sent to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Destination {
    pub host: String,
    pub subset: Option<String>,
    pub port: Option<PortSelector>,
}

/// A port of a destination. Numbers are kept wide so out-of-range values are reported by
/// validation with Istio's message rather than as a type error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSelector {
    pub number: Option<u32>,
}

/// A percentage in `[0.0, 100.0]`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Percent {
    #[serde(default)]
    pub value: f64,
}

/// Header manipulation for requests and responses.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Headers {
    pub request: Option<HeaderOperations>,
    pub response: Option<HeaderOperations>,
}

/// `set`, `add` and `remove` operations on one direction's headers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderOperations {
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

/// Selects workloads by labels (`workloadSelector` of ServiceEntry).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSelector {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Selects workloads by labels (`workloadSelector` of DestinationRule, Istio's
/// `type.v1beta1.WorkloadSelector`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MatchLabelsSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}
