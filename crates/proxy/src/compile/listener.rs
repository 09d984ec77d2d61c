//! Listener → [`ListenerSpec`]: one HTTP connection manager on one socket address.

use std::net::SocketAddr;
use std::sync::Arc;

use envoy_types::pb::envoy::config::listener::v3::{Listener, filter};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager, http_filter,
};

use super::{
    CompileError, Reason, compile_route_config, decode_any, require_ads, socket_addr, type_url_of,
};
use crate::resource::ResourceType;
use crate::routing::RouteTable;

pub const HCM_FILTER: &str = "envoy.filters.network.http_connection_manager";
pub const ROUTER_FILTER: &str = "envoy.filters.http.router";
const HCM_TYPE: &str =
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const ROUTER_TYPE: &str = "envoy.extensions.filters.http.router.v3.Router";

/// Listener filters that only sniff the connection; HTTP detection is built in.
const HARMLESS_LISTENER_FILTERS: [&str; 2] = [
    "envoy.filters.listener.http_inspector",
    "envoy.filters.listener.tls_inspector",
];

#[derive(Debug, Clone)]
pub enum RouteSource {
    /// A RouteConfiguration delivered over ADS, looked up by name per request.
    Rds(String),
    Inline(Arc<RouteTable>),
}

#[derive(Debug, Clone)]
pub struct ListenerSpec {
    pub name: String,
    pub address: SocketAddr,
    pub stat_prefix: String,
    pub routes: RouteSource,
}

impl ListenerSpec {
    pub fn rds_name(&self) -> Option<&str> {
        match &self.routes {
            RouteSource::Rds(name) => Some(name),
            RouteSource::Inline(_) => None,
        }
    }
}

pub fn compile_listener(listener: &Listener) -> Result<ListenerSpec, CompileError> {
    compile(listener)
        .map_err(|reason| CompileError::new(ResourceType::Listener, &listener.name, reason))
}

fn compile(listener: &Listener) -> Result<ListenerSpec, Reason> {
    let address = socket_addr(listener.address.as_ref(), "address")?;
    if !listener.additional_addresses.is_empty() {
        return Err("additional_addresses is not supported yet".into());
    }
    if listener.use_original_dst.is_some_and(|v| v.value) {
        return Err("use_original_dst is not supported yet".into());
    }
    if listener.default_filter_chain.is_some() || listener.filter_chain_matcher.is_some() {
        return Err("default_filter_chain / filter_chain_matcher are not supported yet".into());
    }
    if listener.api_listener.is_some() || listener.udp_listener_config.is_some() {
        return Err("only TCP listeners are supported".into());
    }
    for lf in &listener.listener_filters {
        if !HARMLESS_LISTENER_FILTERS.contains(&lf.name.as_str()) {
            return Err(format!("listener filter {} is not supported yet", lf.name));
        }
    }
    let [chain] = listener.filter_chains.as_slice() else {
        return Err(format!(
            "exactly one filter chain is supported, found {}",
            listener.filter_chains.len()
        ));
    };
    if chain.filter_chain_match.is_some() {
        return Err("filter_chains[0].filter_chain_match is not supported yet".into());
    }
    if chain.transport_socket.is_some() {
        return Err("filter_chains[0].transport_socket (TLS) is not supported yet".into());
    }
    let [filter] = chain.filters.as_slice() else {
        return Err(format!(
            "filter_chains[0] must hold exactly one filter ({HCM_FILTER}), found {}",
            chain.filters.len()
        ));
    };
    let Some(filter::ConfigType::TypedConfig(any)) = &filter.config_type else {
        return Err(format!(
            "network filter {} has no typed_config",
            filter.name
        ));
    };
    if any.type_url != type_url_of(HCM_TYPE) {
        return Err(format!(
            "network filter {} is not supported yet",
            filter.name
        ));
    }
    let hcm: HttpConnectionManager = decode_any(any, &type_url_of(HCM_TYPE))?;
    let routes = compile_hcm(&hcm)?;
    Ok(ListenerSpec {
        name: listener.name.clone(),
        address,
        stat_prefix: hcm.stat_prefix.clone(),
        routes,
    })
}

fn compile_hcm(hcm: &HttpConnectionManager) -> Result<RouteSource, Reason> {
    use http_connection_manager::CodecType;
    match CodecType::try_from(hcm.codec_type) {
        Ok(CodecType::Auto | CodecType::Http1 | CodecType::Http2) => {}
        _ => {
            return Err(format!(
                "http_connection_manager codec_type {} is not supported",
                hcm.codec_type
            ));
        }
    }
    if !hcm.upgrade_configs.is_empty() {
        return Err(
            "http_connection_manager upgrade_configs (WebSocket) is not supported yet".into(),
        );
    }
    if hcm.tracing.is_some() {
        return Err("http_connection_manager tracing is not supported yet".into());
    }
    if !hcm.access_log.is_empty() {
        return Err("http_connection_manager access_log is not supported yet".into());
    }
    compile_http_filters(hcm)?;
    match &hcm.route_specifier {
        Some(http_connection_manager::RouteSpecifier::Rds(rds)) => {
            require_ads(
                rds.config_source.as_ref(),
                "http_connection_manager rds.config_source",
            )?;
            if rds.route_config_name.is_empty() {
                return Err("http_connection_manager rds.route_config_name is empty".into());
            }
            Ok(RouteSource::Rds(rds.route_config_name.clone()))
        }
        Some(http_connection_manager::RouteSpecifier::RouteConfig(config)) => {
            let table = compile_route_config(config)
                .map_err(|e| format!("inline route_config: {}", e.reason))?;
            Ok(RouteSource::Inline(Arc::new(table)))
        }
        Some(http_connection_manager::RouteSpecifier::ScopedRoutes(_)) => {
            Err("http_connection_manager scoped_routes is not supported yet".into())
        }
        None => Err("http_connection_manager has neither rds nor route_config".into()),
    }
}

/// The router must be last; other filters are refused unless marked optional
/// (Envoy's `is_optional`: skip a filter the proxy does not know).
fn compile_http_filters(hcm: &HttpConnectionManager) -> Result<(), Reason> {
    let Some((last, rest)) = hcm.http_filters.split_last() else {
        return Err(format!("http_filters must end with {ROUTER_FILTER}"));
    };
    for f in rest {
        if f.disabled || f.is_optional {
            continue;
        }
        return Err(format!("http filter {} is not supported yet", f.name));
    }
    let is_router = match &last.config_type {
        Some(http_filter::ConfigType::TypedConfig(any)) => any.type_url == type_url_of(ROUTER_TYPE),
        _ => last.name == ROUTER_FILTER,
    };
    if !is_router {
        return Err(format!(
            "http filter {} is not supported yet (the last filter must be {ROUTER_FILTER})",
            last.name
        ));
    }
    Ok(())
}
