//! Istio's standard metrics, reported as Istio's sidecars report them: the client's
//! sidecar as `reporter="source"` on its outbound listener, the server's as
//! `reporter="destination"` on its inbound ones, with the peer learned from endpoint
//! metadata, the peer's certificate and the metadata-exchange headers.

pub mod exchange;
pub mod labels;
pub mod metrics;
mod record;

use std::sync::Arc;
use std::time::Instant;

use http::HeaderMap;

pub use exchange::OwnMetadata;
pub use labels::{PeerWorkload, Principal, ServiceLabels, Shared};
pub use metrics::{IstioMetrics, RequestLabels, ResponseFlag};
pub use record::{MeteredBody, RequestRecord};

use labels::{DEFAULT_CLUSTER_ID, UNKNOWN_SERVICE, UNKNOWN_WORKLOAD};
use metrics::{Reporter, RequestProtocol, SecurityPolicy};

/// Which way a listener's traffic goes (Envoy's `traffic_direction`): it decides the
/// reporter. Listeners without one report no Istio metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
}

/// The proxy's own side of every report, made once.
#[derive(Debug)]
pub struct Telemetry {
    pub metrics: Arc<IstioMetrics>,
    own: Shared<PeerWorkload>,
    own_principal: Principal,
    /// `destination_service*` of an inbound request whose cluster names no service:
    /// Istio's sidecars use their own canonical name there, not the `Host` header.
    own_service: Shared<ServiceLabels>,
    exchange: OwnMetadata,
}

/// What a proxy knows of itself for telemetry.
#[derive(Debug, Clone)]
pub struct OwnWorkload<'a> {
    pub node_id: &'a str,
    pub name: &'a str,
    pub namespace: &'a str,
    pub labels: &'a std::collections::BTreeMap<String, String>,
    /// The SPIFFE URI of its certificate.
    pub principal: &'a str,
}

impl Telemetry {
    pub fn new(own: &OwnWorkload<'_>) -> Self {
        let workload =
            PeerWorkload::from_labels(own.name, own.namespace, own.labels, DEFAULT_CLUSTER_ID);
        let exchange = OwnMetadata::new(own.node_id, own.name, &workload);
        let own_service = Shared::new(Arc::new(ServiceLabels {
            host: workload.canonical_service.clone(),
            name: workload.canonical_service.clone(),
            namespace: workload.namespace.clone(),
        }));
        Self {
            metrics: Arc::default(),
            own: Shared::new(Arc::new(workload)),
            own_principal: labels::principal(own.principal),
            own_service,
            exchange,
        }
    }

    /// Starts the record of a request the server's sidecar received (`reporter =
    /// destination`): the caller is who its certificate and exchange headers say.
    pub fn inbound(
        &self,
        headers: &HeaderMap,
        caller: Shared<PeerWorkload>,
        caller_principal: Option<Principal>,
        mutual_tls: bool,
        started: Instant,
    ) -> RequestRecord {
        let labels = RequestLabels {
            reporter: Reporter::Destination,
            source: caller,
            source_principal: caller_principal,
            destination: self.own.clone(),
            destination_principal: mutual_tls.then(|| self.own_principal.clone()),
            service: self.own_service.clone(),
            protocol: protocol(headers),
            response_code: 0,
            grpc_status: None,
            flag: ResponseFlag::None,
            security: if mutual_tls {
                SecurityPolicy::MutualTls
            } else {
                SecurityPolicy::None
            },
        };
        RequestRecord::new(Arc::clone(&self.metrics), labels, headers, started)
    }

    /// Starts the record of a request the client's sidecar sends (`reporter = source`);
    /// the destination is filled in once an endpoint is picked.
    pub fn outbound(&self, headers: &HeaderMap, started: Instant) -> RequestRecord {
        let labels = RequestLabels {
            reporter: Reporter::Source,
            source: self.own.clone(),
            source_principal: None,
            destination: UNKNOWN_WORKLOAD.clone(),
            destination_principal: None,
            service: UNKNOWN_SERVICE.clone(),
            protocol: protocol(headers),
            response_code: 0,
            grpc_status: None,
            flag: ResponseFlag::None,
            security: SecurityPolicy::Unknown,
        };
        RequestRecord::new(Arc::clone(&self.metrics), labels, headers, started)
    }

    /// The proxy's identity, as the source of an outbound request over mutual TLS.
    pub fn own_principal(&self) -> &Principal {
        &self.own_principal
    }

    /// The exchange headers, for requests to endpoints with a sidecar.
    pub fn exchange(&self) -> &OwnMetadata {
        &self.exchange
    }
}

fn protocol(headers: &HeaderMap) -> RequestProtocol {
    let grpc = headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if grpc {
        RequestProtocol::Grpc
    } else {
        RequestProtocol::Http
    }
}
