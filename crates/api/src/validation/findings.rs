//! Collects validation findings for one resource.

use super::{Severity, ValidationMessage};
use crate::meta::ResourceRef;
use crate::origin::Origin;
use crate::resource::Resource;

pub(super) struct Findings {
    resource: ResourceRef,
    origin: Origin,
    messages: Vec<ValidationMessage>,
}

impl Findings {
    pub fn new(resource: &Resource) -> Self {
        Self {
            resource: resource.reference(),
            origin: resource.origin().clone(),
            messages: Vec::new(),
        }
    }

    /// The namespace of the resource being validated.
    pub fn namespace(&self) -> &str {
        &self.resource.namespace
    }

    pub fn error(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.push(Severity::Error, field.into(), reason.into());
    }

    pub fn warning(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.push(Severity::Warning, field.into(), reason.into());
    }

    /// Records `result`'s error, if any, against `field`.
    pub fn check(&mut self, field: impl Into<String>, result: Result<(), String>) {
        if let Err(reason) = result {
            self.error(field, reason);
        }
    }

    fn push(&mut self, severity: Severity, field: String, reason: String) {
        self.messages.push(ValidationMessage {
            severity,
            resource: self.resource.clone(),
            origin: self.origin.clone(),
            field,
            reason,
        });
    }

    pub fn into_messages(self) -> Vec<ValidationMessage> {
        self.messages
    }
}
