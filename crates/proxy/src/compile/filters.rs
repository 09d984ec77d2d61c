//! A connection manager's `http_filters` → [`HttpFilterChain`], and a route's
//! `typed_per_filter_config` → [`FilterConfigs`].
//!
//! Filters are known by their typed config (a name alone is enough for the router, as
//! Envoy allows). A filter this proxy does not have is refused unless marked optional.

use std::collections::HashMap;
use std::sync::Arc;

use envoy_types::pb::envoy::config::route::v3::FilterConfig;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::HttpFault;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter as ProtoHttpFilter, http_filter,
};
use envoy_types::pb::google::protobuf::Any;

use super::cors::compile_cors;
use super::ext_authz::compile_http_ext_authz;
use super::fault::{HTTP_FAULT_TYPE, compile_fault};
use super::jwt_authn::compile_jwt_authn;
use super::rbac::compile_http_rbac;
use super::{Reason, decode_any, type_url_of};
use crate::filters::{CorsFilter, FaultFilter, HttpFilter, HttpFilterChain, ROUTER_FILTER};
use crate::routing::{FilterConfigs, FilterOverride};

const ROUTER_TYPE: &str = "envoy.extensions.filters.http.router.v3.Router";
const FILTER_CONFIG_TYPE: &str = "envoy.config.route.v3.FilterConfig";

/// The stages before the router; the list must end with the router.
pub fn compile_http_filters(filters: &[ProtoHttpFilter]) -> Result<HttpFilterChain, Reason> {
    let Some((last, rest)) = filters.split_last() else {
        return Err(format!("http_filters must end with {ROUTER_FILTER}"));
    };
    if !is_router(last) {
        return Err(format!(
            "http filter {} is not supported yet (the last filter must be {ROUTER_FILTER})",
            last.name
        ));
    }
    let mut chain = HttpFilterChain::default();
    for filter in rest {
        if filter.disabled {
            // Enabled per route only; no route of this proxy can enable a filter yet.
            continue;
        }
        let any = match &filter.config_type {
            Some(http_filter::ConfigType::TypedConfig(any)) => any,
            _ if filter.is_optional => continue,
            _ => return Err(format!("http filter {} needs a typed_config", filter.name)),
        };
        let field = format!("http filter {}", filter.name);
        if any.type_url == type_url_of(HTTP_FAULT_TYPE) {
            let fault: HttpFault = decode_any(any, &type_url_of(HTTP_FAULT_TYPE))?;
            let config = compile_fault(&fault).map_err(|r| format!("{field}: {r}"))?;
            chain.filters.push(HttpFilter::Fault(FaultFilter::new(
                filter.name.clone(),
                config,
            )));
        } else if any.type_url == bosun_wire::type_urls::CORS {
            chain.filters.push(HttpFilter::Cors(CorsFilter {
                name: filter.name.clone(),
            }));
        } else if any.type_url == bosun_wire::type_urls::JWT_AUTHN {
            let config = decode_any(any, bosun_wire::type_urls::JWT_AUTHN)?;
            let jwt =
                compile_jwt_authn(&filter.name, &config).map_err(|r| format!("{field}: {r}"))?;
            chain.filters.push(HttpFilter::JwtAuthn(jwt));
        } else if any.type_url == bosun_wire::type_urls::HTTP_EXT_AUTHZ {
            let config = decode_any(any, bosun_wire::type_urls::HTTP_EXT_AUTHZ)?;
            let ext_authz = compile_http_ext_authz(&filter.name, &config)
                .map_err(|r| format!("{field}: {r}"))?;
            chain.filters.push(HttpFilter::ExtAuthz(ext_authz));
        } else if any.type_url == bosun_wire::type_urls::HTTP_RBAC {
            let config = decode_any(any, bosun_wire::type_urls::HTTP_RBAC)?;
            let rbac =
                compile_http_rbac(&filter.name, &config).map_err(|r| format!("{field}: {r}"))?;
            chain.filters.push(HttpFilter::Rbac(rbac));
        } else if any.type_url == type_url_of(ROUTER_TYPE) {
            return Err(format!("{field}: the router must be the last filter"));
        } else if !filter.is_optional {
            return Err(format!("{field} ({}) is not supported yet", any.type_url));
        }
    }
    Ok(chain)
}

fn is_router(filter: &ProtoHttpFilter) -> bool {
    match &filter.config_type {
        Some(http_filter::ConfigType::TypedConfig(any)) => any.type_url == type_url_of(ROUTER_TYPE),
        _ => filter.name == ROUTER_FILTER,
    }
}

/// What a route (or virtual host) tells each filter.
pub fn compile_per_filter(configs: &HashMap<String, Any>) -> Result<FilterConfigs, Reason> {
    let mut entries = Vec::with_capacity(configs.len());
    // Sorted, so a NACK names the same filter every time.
    let mut names: Vec<&String> = configs.keys().collect();
    names.sort();
    for name in names {
        let field = format!("typed_per_filter_config[{name}]");
        let mut any = &configs[name];
        let wrapper;
        let mut optional = false;
        if any.type_url == type_url_of(FILTER_CONFIG_TYPE) {
            wrapper = decode_any::<FilterConfig>(any, &type_url_of(FILTER_CONFIG_TYPE))?;
            if wrapper.disabled {
                entries.push((name.clone(), FilterOverride::Disabled));
                continue;
            }
            optional = wrapper.is_optional;
            match &wrapper.config {
                Some(inner) => any = inner,
                None => continue,
            }
        }
        if any.type_url == type_url_of(HTTP_FAULT_TYPE) {
            let fault: HttpFault = decode_any(any, &type_url_of(HTTP_FAULT_TYPE))?;
            let config = compile_fault(&fault).map_err(|r| format!("{field}: {r}"))?;
            entries.push((name.clone(), FilterOverride::Config(Arc::new(config))));
        } else if any.type_url == bosun_wire::type_urls::CORS_POLICY {
            let policy = decode_any(any, bosun_wire::type_urls::CORS_POLICY)?;
            let policy = compile_cors(&policy).map_err(|r| format!("{field}: {r}"))?;
            entries.push((name.clone(), FilterOverride::Config(Arc::new(policy))));
        } else if !optional {
            return Err(format!("{field}: {} is not supported yet", any.type_url));
        }
    }
    Ok(FilterConfigs::new(entries))
}
