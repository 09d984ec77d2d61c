//! The network filters before a chain's last one: access control on the connection
//! itself (`envoy.filters.network.rbac`, then, for CUSTOM policies,
//! `envoy.filters.network.ext_authz`), run in order when it opens. One that refuses
//! closes it.

use arc_swap::ArcSwap;

use super::{ExtAuthzFilter, RbacFilter};
use crate::rbac::Subject;
use crate::snapshot::Snapshot;

#[derive(Debug, Clone)]
pub enum ConnectionFilter {
    Rbac(RbacFilter),
    ExtAuthz(ExtAuthzFilter),
}

impl ConnectionFilter {
    pub fn name(&self) -> &str {
        match self {
            ConnectionFilter::Rbac(filter) => &filter.name,
            ConnectionFilter::ExtAuthz(filter) => &filter.name,
        }
    }
}

/// Whether every filter lets the connection through; `Err` names the one that refused.
pub async fn admit<'f>(
    filters: &'f [ConnectionFilter],
    subject: &Subject<'_>,
    upstream: &ArcSwap<Snapshot>,
) -> Result<(), &'f str> {
    let mut metadata = serde_json::Map::new();
    for filter in filters {
        let subject = Subject {
            metadata: Some(&metadata),
            ..*subject
        };
        match filter {
            ConnectionFilter::Rbac(rbac) => {
                let shadow = rbac.check(&subject).map_err(|_| filter.name())?;
                if let Some(decision) = shadow {
                    rbac.record_shadow(&decision, &mut metadata);
                }
            }
            ConnectionFilter::ExtAuthz(ext_authz) => {
                if ext_authz.enabled(&metadata)
                    && !ext_authz.on_connection(&subject, upstream).await
                {
                    return Err(filter.name());
                }
            }
        }
    }
    Ok(())
}
