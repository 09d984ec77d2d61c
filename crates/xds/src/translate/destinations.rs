//! Where a rule's destination goes: its port, resolved as Istio resolves it, and the
//! cluster that makes with its subset. HTTP and TCP routes share it.

use bosun_model::{RouteDestination, Snapshot};

use super::clusters::destination_port;
use super::names::outbound_cluster_name;

/// The cluster a destination names. A destination outside the registry keeps its
/// written port (or the incoming one): Envoy answers 503 for it, as with Istio.
pub(super) fn destination_cluster(
    snapshot: &Snapshot,
    destination: &RouteDestination,
    incoming_port: u16,
) -> String {
    let port = resolved_port(snapshot, destination, incoming_port);
    outbound_cluster_name(port, destination.subset.as_deref(), &destination.host)
}

/// The destination's port: the one written, else the incoming port when the service
/// has it, else the service's only port (or its first HTTP port).
pub(super) fn resolved_port(
    snapshot: &Snapshot,
    destination: &RouteDestination,
    incoming_port: u16,
) -> u16 {
    snapshot
        .service(&destination.host)
        .and_then(|service| destination_port(service, destination.port, incoming_port))
        .map(|port| port.number)
        .or(destination.port)
        .unwrap_or(incoming_port)
}
