//! Istio's validation of the kinds Bosun reads.
//!
//! The checks follow Istio's own (its CRD schema rules and `pkg/config/validation`), with
//! Istio's wording where users might search for it. Findings name the resource, its
//! `file:line`, and the field.

mod authorization_policy;
pub use authorization_policy::{MATCH_ANY_TEMPLATE, MATCH_ONE_TEMPLATE, contains_path_template};
mod destination_rule;
mod findings;
mod local_workload;
mod peer_authentication;
mod request_authentication;
pub use peer_authentication::port_key;
mod rules;
pub use rules::JWT_CLAIM_PREFIX;
mod service_entry;
mod sidecar;
mod virtual_service;
mod workload_entry;

use std::fmt;

use crate::meta::ResourceRef;
use crate::origin::Origin;
use crate::resource::Resource;
use findings::Findings;

/// How serious a validation finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    /// Istio refuses the resource; Bosun does not apply it.
    Error,
    /// Istio accepts the resource but warns.
    Warning,
}

/// One finding of [`validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationMessage {
    pub severity: Severity,
    pub resource: ResourceRef,
    /// Where the resource starts.
    pub origin: Origin,
    /// Dotted path of the field concerned (`spec.http[0].route`).
    pub field: String,
    pub reason: String,
}

impl ValidationMessage {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for ValidationMessage {
    /// `<kind> <namespace>/<name> (<file>:<line>): <field>: <reason>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let warning = match self.severity {
            Severity::Error => "",
            Severity::Warning => "warning: ",
        };
        write!(
            f,
            "{} ({}): {warning}{}: {}",
            self.resource, self.origin, self.field, self.reason
        )
    }
}

/// Checks `resource` the way Istio's validation does. Errors and warnings are both
/// returned; [`ValidationMessage::is_error`] tells them apart. Unsupported kinds yield
/// nothing (they are not interpreted).
pub fn validate(resource: &Resource) -> Vec<ValidationMessage> {
    let mut findings = Findings::new(resource);
    match resource {
        Resource::VirtualService(config) => virtual_service::validate(config, &mut findings),
        Resource::DestinationRule(config) => destination_rule::validate(config, &mut findings),
        Resource::ServiceEntry(config) => service_entry::validate(config, &mut findings),
        Resource::WorkloadEntry(config) => workload_entry::validate(config, &mut findings),
        Resource::Sidecar(config) => sidecar::validate(config, &mut findings),
        Resource::LocalWorkload(config) => local_workload::validate(config, &mut findings),
        Resource::PeerAuthentication(config) => {
            peer_authentication::validate(config, &mut findings);
        }
        Resource::AuthorizationPolicy(config) => {
            authorization_policy::validate(config, &mut findings);
        }
        Resource::RequestAuthentication(config) => {
            request_authentication::validate(config, &mut findings);
        }
        Resource::Unsupported { .. } => {}
    }
    findings.into_messages()
}
