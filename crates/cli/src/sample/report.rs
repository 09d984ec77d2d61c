//! The JSON the sample workload answers with: who answered, what it saw, and the tree of
//! downstream calls it made to answer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Headers a request carries on to every downstream call, as Istio's bookinfo apps do,
/// so routing on `end-user` and distributed traces work across the whole chain.
pub const PROPAGATED_HEADERS: &[&str] = &[
    "end-user",
    "user-agent",
    "x-request-id",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "b3",
    "traceparent",
    "tracestate",
    "x-ot-span-context",
    "x-cloud-trace-context",
    "grpc-trace-bin",
];

/// Headers echoed back besides the propagated ones: what a proxy on the path adds.
pub const ECHOED_HEADERS: &[&str] = &[
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-client-cert",
    "x-envoy-attempt-count",
    "x-envoy-original-path",
];

/// One answer of the sample workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EchoReport {
    pub service: String,
    pub version: String,
    pub workload: String,
    pub method: String,
    pub path: String,
    pub host: String,
    /// The selected request headers ([`PROPAGATED_HEADERS`], [`ECHOED_HEADERS`]).
    pub headers: BTreeMap<String, String>,
    /// `HTTP/1.1` or `HTTP/2.0`, as the request reached this workload.
    pub protocol: String,
    pub calls: Vec<CallReport>,
    /// Set when this workload failed the request itself (its error rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The TLS the request came over, when the workload serves TLS (`--tls-cert`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsReport>,
    /// How many bytes of request body came (none: left out).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub body_bytes: usize,
}

fn is_zero(count: &usize) -> bool {
    *count == 0
}

/// What a TLS connection to the sample workload carried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TlsReport {
    /// The name the client sent as SNI.
    pub sni: Option<String>,
    pub alpn: Option<String>,
    /// The client certificate's subject and SANs, when it presented one.
    pub client_subject: Option<String>,
    #[serde(default)]
    pub client_names: Vec<String>,
}

impl TlsReport {
    pub fn of(connection: &rustls::ServerConnection) -> Self {
        let client = connection
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(bosun_proxy::tls::PeerCertificate::of);
        TlsReport {
            sni: connection.server_name().map(str::to_owned),
            alpn: connection
                .alpn_protocol()
                .map(|alpn| String::from_utf8_lossy(alpn).into_owned()),
            client_subject: client.as_ref().map(|client| client.subject.clone()),
            client_names: client
                .map(|client| client.uri.into_iter().chain(client.dns).collect())
                .unwrap_or_default(),
        }
    }
}

/// One downstream call, as seen by the caller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallReport {
    pub url: String,
    /// The response status; absent when no response came back.
    pub status: Option<u16>,
    /// Who answered, when the answer was a sample workload's report.
    pub service: Option<String>,
    pub version: Option<String>,
    pub duration_ms: f64,
    #[serde(default)]
    pub calls: Vec<CallReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CallReport {
    /// Whether the call got a successful (2xx) answer.
    pub fn succeeded(&self) -> bool {
        self.error.is_none()
            && self
                .status
                .is_some_and(|status| (200..300).contains(&status))
    }
}
