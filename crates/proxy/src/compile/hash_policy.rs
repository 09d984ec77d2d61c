//! `RouteAction.hash_policy` → [`HashPolicy`].

use std::sync::Arc;

use envoy_types::pb::envoy::config::route::v3::route_action::{
    HashPolicy as ProtoHashPolicy, hash_policy,
};
use http::HeaderName;

use super::{Reason, duration};
use crate::routing::{HashCookie, HashMethod, HashPolicy, HashSource};

/// The route's hash policy; `None` when it has none.
pub(super) fn compile_hash_policy(
    policies: &[ProtoHashPolicy],
) -> Result<Option<Arc<HashPolicy>>, Reason> {
    if policies.is_empty() {
        return Ok(None);
    }
    let methods = policies
        .iter()
        .enumerate()
        .map(|(index, policy)| {
            method(policy).map_err(|reason| format!("route.hash_policy[{index}]: {reason}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(Arc::new(HashPolicy { methods })))
}

fn method(policy: &ProtoHashPolicy) -> Result<HashMethod, Reason> {
    use hash_policy::PolicySpecifier;
    let source = match &policy.policy_specifier {
        Some(PolicySpecifier::Header(header)) => {
            if header.regex_rewrite.is_some() {
                return Err("header.regex_rewrite is not supported yet".into());
            }
            let name = HeaderName::try_from(header.header_name.as_str())
                .map_err(|_| format!("header_name {:?} is invalid", header.header_name))?;
            HashSource::Header(name)
        }
        Some(PolicySpecifier::Cookie(cookie)) => {
            if cookie.name.is_empty() {
                return Err("cookie.name is empty".into());
            }
            HashSource::Cookie(HashCookie {
                name: cookie.name.clone(),
                ttl: cookie.ttl.as_ref().map(duration),
                path: cookie.path.clone(),
                attributes: cookie
                    .attributes
                    .iter()
                    .map(|attribute| (attribute.name.clone(), attribute.value.clone()))
                    .collect(),
            })
        }
        Some(PolicySpecifier::ConnectionProperties(properties)) => {
            if !properties.source_ip {
                return Err("connection_properties hashes on nothing (source_ip is false)".into());
            }
            HashSource::SourceIp
        }
        Some(PolicySpecifier::QueryParameter(query)) => {
            HashSource::QueryParameter(query.name.clone())
        }
        Some(PolicySpecifier::FilterState(_)) => {
            return Err("filter_state is not supported yet".into());
        }
        None => return Err("policy_specifier is missing".into()),
    };
    Ok(HashMethod {
        source,
        terminal: policy.terminal,
    })
}
