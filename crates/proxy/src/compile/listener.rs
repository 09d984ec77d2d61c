//! Listener → [`ListenerSpec`]: one HTTP connection manager on one socket address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::listener::v3::{
    FilterChain, FilterChainMatch, Listener, filter,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};

use super::ext_authz::compile_network_ext_authz;
use super::filters::compile_http_filters;
use super::rbac::compile_network_rbac;
use super::tls::{self, DownstreamTls};
use super::{
    CompileError, Reason, compile_route_config, decode_any, duration, require_ads, socket_addr,
    type_url_of,
};
use crate::filters::HttpFilterChain;
use crate::filters::connection::ConnectionFilter;
use crate::http::path::{EscapedSlashes, PathNormalization};
use crate::resource::ResourceType;
use crate::routing::RouteTable;
use crate::telemetry::Direction;
use envoy_types::pb::envoy::config::core::v3::TrafficDirection;

/// The request headers timeout when the connection manager sets none. Envoy's default is
/// none at all; a sidecar should not let a slow client hold a connection forever.
pub const DEFAULT_REQUEST_HEADERS_TIMEOUT: Duration = Duration::from_secs(10);

pub const HCM_FILTER: &str = bosun_wire::network_filters::HTTP_CONNECTION_MANAGER;
const HCM_TYPE: &str =
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const TCP_PROXY: &str = bosun_wire::network_filters::TCP_PROXY;
const TCP_PROXY_TYPE: &str = "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";

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

/// How the app is told who called over mTLS (Envoy's `forward_client_cert_details`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientCertHeader {
    /// Remove any `x-forwarded-client-cert` the caller sent (Envoy's default).
    #[default]
    Sanitize,
    /// Over mTLS, append the caller's certificate details to it; otherwise remove it.
    AppendForward(CertDetails),
    /// Over mTLS, replace it with the caller's certificate details; otherwise remove it.
    SanitizeSet(CertDetails),
}

/// Which of the caller's certificate fields go in the header beside `By` and `Hash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CertDetails {
    pub subject: bool,
    pub uri: bool,
    pub dns: bool,
}

/// One filter chain: its network filter, behind mutual TLS or not.
#[derive(Debug, Clone)]
pub struct FilterChainSpec {
    /// `Some` for the chain that terminates mutual TLS.
    pub tls: Option<DownstreamTls>,
    /// The access-control filters before the last filter, in order: a connection one of
    /// them refuses is closed.
    pub connection_filters: Vec<ConnectionFilter>,
    pub network: NetworkFilter,
}

/// What a chain does with a connection: serve HTTP, or proxy its bytes.
#[derive(Debug, Clone)]
pub enum NetworkFilter {
    Http(HttpChainSpec),
    Tcp(TcpProxySpec),
}

/// `envoy.filters.network.tcp_proxy`: the connection's bytes to a cluster's endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpProxySpec {
    pub stat_prefix: String,
    pub cluster: Arc<str>,
}

/// An HTTP connection manager.
#[derive(Debug, Clone)]
pub struct HttpChainSpec {
    pub stat_prefix: String,
    pub routes: RouteSource,
    /// The HTTP filters before the router, in order.
    pub http_filters: Arc<HttpFilterChain>,
    pub client_cert_header: ClientCertHeader,
    /// How long a request's headers may take once its first byte is in (`None`: no limit).
    pub request_headers_timeout: Option<Duration>,
    /// HTTP/1.1 `Upgrade: websocket` requests are tunnelled (Envoy's `upgrade_configs`);
    /// otherwise an upgrade request is refused.
    pub websocket: bool,
    /// What is done to request paths before anything looks at them.
    pub path_normalization: PathNormalization,
}

#[derive(Debug, Clone)]
pub struct ListenerSpec {
    pub name: String,
    pub address: SocketAddr,
    /// The chain for connections that open with a TLS handshake.
    pub tls_chain: Option<FilterChainSpec>,
    /// The chain for every other connection.
    pub plaintext_chain: Option<FilterChainSpec>,
    /// Envoy's `traffic_direction`: which reporter the listener's Istio metrics name.
    pub direction: Option<Direction>,
}

impl ListenerSpec {
    pub fn chains(&self) -> impl Iterator<Item = &FilterChainSpec> {
        self.plaintext_chain.iter().chain(self.tls_chain.iter())
    }

    /// The RouteConfigurations the listener's chains name.
    pub fn rds_names(&self) -> impl Iterator<Item = &str> {
        self.chains().filter_map(|chain| match &chain.network {
            NetworkFilter::Http(HttpChainSpec {
                routes: RouteSource::Rds(name),
                ..
            }) => Some(name.as_str()),
            _ => None,
        })
    }

    /// The HTTP connection manager a connection is served by, when its chain has one.
    pub fn http_chain_for(&self, is_tls: bool) -> Option<&HttpChainSpec> {
        match &self.chain_for(is_tls)?.network {
            NetworkFilter::Http(http) => Some(http),
            NetworkFilter::Tcp(_) => None,
        }
    }

    /// The chain a connection is served by: the TLS chain when it opened with a TLS
    /// handshake and there is one, else the plaintext chain.
    pub fn chain_for(&self, is_tls: bool) -> Option<&FilterChainSpec> {
        if is_tls {
            self.tls_chain.as_ref()
        } else {
            self.plaintext_chain.as_ref()
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
    if listener.filter_chains.is_empty() {
        return Err("a listener needs a filter chain".into());
    }
    let direction = match TrafficDirection::try_from(listener.traffic_direction) {
        Ok(TrafficDirection::Inbound) => Some(Direction::Inbound),
        Ok(TrafficDirection::Outbound) => Some(Direction::Outbound),
        Ok(TrafficDirection::Unspecified) => None,
        Err(_) => {
            return Err(format!(
                "traffic_direction {} is unknown",
                listener.traffic_direction
            ));
        }
    };
    let mut spec = ListenerSpec {
        name: listener.name.clone(),
        address,
        tls_chain: None,
        plaintext_chain: None,
        direction,
    };
    for (index, chain) in listener.filter_chains.iter().enumerate() {
        let field = format!("filter_chains[{index}]");
        let compiled = compile_chain(chain).map_err(|r| format!("{field}: {r}"))?;
        let slot = if compiled.tls.is_some() {
            &mut spec.tls_chain
        } else {
            &mut spec.plaintext_chain
        };
        if slot.is_some() {
            return Err(format!(
                "{field}: a second {} chain; chains are told apart only by whether the connection opens with TLS",
                if compiled.tls.is_some() {
                    "TLS"
                } else {
                    "plaintext"
                }
            ));
        }
        *slot = Some(compiled);
    }
    Ok(spec)
}

/// A chain: an optional match on the transport protocol only, an optional mTLS socket
/// and one HTTP connection manager.
fn compile_chain(chain: &FilterChain) -> Result<FilterChainSpec, Reason> {
    let tls = match &chain.transport_socket {
        Some(socket) => {
            Some(tls::downstream_socket(socket).map_err(|r| format!("transport_socket: {r}"))?)
        }
        None => None,
    };
    if let Some(chain_match) = &chain.filter_chain_match {
        let only_transport = FilterChainMatch {
            transport_protocol: chain_match.transport_protocol.clone(),
            ..Default::default()
        };
        if *chain_match != only_transport {
            return Err(
                "filter_chain_match may only set transport_protocol (\"tls\" or \"raw_buffer\")"
                    .into(),
            );
        }
        match (chain_match.transport_protocol.as_str(), &tls) {
            ("tls", Some(_)) | ("raw_buffer" | "", None) => {}
            ("tls", None) => {
                return Err(
                    "a chain matching TLS must terminate it (TLS passthrough is not supported yet)"
                        .into(),
                );
            }
            ("raw_buffer", Some(_)) => {
                return Err(
                    "a chain matching raw_buffer cannot have a TLS transport socket".into(),
                );
            }
            (other, _) => {
                return Err(format!("transport_protocol {other:?} is not supported"));
            }
        }
    }
    let Some((filter, before)) = chain.filters.split_last() else {
        return Err(format!(
            "a chain needs a filter ({HCM_FILTER} or {TCP_PROXY}), found none"
        ));
    };
    let mut connection_filters = Vec::with_capacity(before.len());
    for filter in before {
        let compiled = match &filter.config_type {
            Some(filter::ConfigType::TypedConfig(any))
                if any.type_url == bosun_wire::type_urls::NETWORK_RBAC =>
            {
                let config = decode_any(any, bosun_wire::type_urls::NETWORK_RBAC)?;
                compile_network_rbac(&filter.name, &config).map(ConnectionFilter::Rbac)
            }
            Some(filter::ConfigType::TypedConfig(any))
                if any.type_url == bosun_wire::type_urls::NETWORK_EXT_AUTHZ =>
            {
                let config = decode_any(any, bosun_wire::type_urls::NETWORK_EXT_AUTHZ)?;
                compile_network_ext_authz(&filter.name, &config).map(ConnectionFilter::ExtAuthz)
            }
            _ => {
                return Err(format!(
                    "network filter {} is not supported before the last filter yet ({} and {} are)",
                    filter.name,
                    bosun_wire::network_filters::RBAC,
                    bosun_wire::network_filters::EXT_AUTHZ,
                ));
            }
        };
        connection_filters
            .push(compiled.map_err(|r| format!("network filter {}: {r}", filter.name))?);
    }
    let Some(filter::ConfigType::TypedConfig(any)) = &filter.config_type else {
        return Err(format!(
            "network filter {} has no typed_config",
            filter.name
        ));
    };
    let network = if any.type_url == type_url_of(HCM_TYPE) {
        let hcm: HttpConnectionManager = decode_any(any, &type_url_of(HCM_TYPE))?;
        NetworkFilter::Http(compile_http_chain(&hcm)?)
    } else if any.type_url == type_url_of(TCP_PROXY_TYPE) {
        let proxy: TcpProxy = decode_any(any, &type_url_of(TCP_PROXY_TYPE))?;
        NetworkFilter::Tcp(compile_tcp_proxy(&proxy).map_err(|r| format!("tcp_proxy: {r}"))?)
    } else {
        return Err(format!(
            "network filter {} is not supported yet",
            filter.name
        ));
    };
    Ok(FilterChainSpec {
        tls,
        connection_filters,
        network,
    })
}

fn compile_http_chain(hcm: &HttpConnectionManager) -> Result<HttpChainSpec, Reason> {
    let (routes, http_filters) = compile_hcm(hcm)?;
    Ok(HttpChainSpec {
        stat_prefix: hcm.stat_prefix.clone(),
        routes,
        http_filters: Arc::new(http_filters),
        client_cert_header: client_cert_header(hcm)?,
        // Envoy: zero turns it off; unset, Bosun keeps a slow client from holding on.
        request_headers_timeout: match hcm.request_headers_timeout.as_ref().map(duration) {
            None => Some(DEFAULT_REQUEST_HEADERS_TIMEOUT),
            Some(timeout) if timeout.is_zero() => None,
            Some(timeout) => Some(timeout),
        },
        websocket: websocket_upgrade(hcm)?,
        path_normalization: path_normalization(hcm)?,
    })
}

/// `normalize_path`, `merge_slashes` and `path_with_escaped_slashes_action`.
fn path_normalization(hcm: &HttpConnectionManager) -> Result<PathNormalization, Reason> {
    use http_connection_manager::PathWithEscapedSlashesAction as Action;
    let escaped_slashes = match Action::try_from(hcm.path_with_escaped_slashes_action) {
        Ok(Action::ImplementationSpecificDefault | Action::KeepUnchanged) => EscapedSlashes::Keep,
        Ok(Action::UnescapeAndForward) => EscapedSlashes::Unescape,
        Ok(Action::RejectRequest) => EscapedSlashes::Reject,
        Ok(Action::UnescapeAndRedirect) => {
            return Err(
                "path_with_escaped_slashes_action UNESCAPE_AND_REDIRECT is not supported yet"
                    .into(),
            );
        }
        Err(_) => {
            return Err(format!(
                "path_with_escaped_slashes_action {} is unknown",
                hcm.path_with_escaped_slashes_action
            ));
        }
    };
    Ok(PathNormalization {
        normalize: hcm.normalize_path.is_some_and(|v| v.value),
        merge_slashes: hcm.merge_slashes,
        escaped_slashes,
    })
}

/// A TCP proxy to one cluster; everything else it can say is refused by name.
#[allow(deprecated)] // The deprecated fields still change behaviour when set.
fn compile_tcp_proxy(proxy: &TcpProxy) -> Result<TcpProxySpec, Reason> {
    let unsupported = [
        (proxy.on_demand.is_some(), "on_demand"),
        (proxy.metadata_match.is_some(), "metadata_match"),
        (proxy.idle_timeout.is_some(), "idle_timeout"),
        (
            proxy.downstream_idle_timeout.is_some(),
            "downstream_idle_timeout",
        ),
        (
            proxy.upstream_idle_timeout.is_some(),
            "upstream_idle_timeout",
        ),
        (!proxy.access_log.is_empty(), "access_log"),
        (
            proxy.max_connect_attempts.is_some_and(|n| n.value > 1),
            "max_connect_attempts",
        ),
        (!proxy.hash_policy.is_empty(), "hash_policy"),
        (proxy.tunneling_config.is_some(), "tunneling_config"),
        (
            proxy.max_downstream_connection_duration.is_some(),
            "max_downstream_connection_duration",
        ),
    ];
    if let Some((_, field)) = unsupported.iter().find(|(set, _)| *set) {
        return Err(format!("{field} is not supported yet"));
    }
    let cluster = match &proxy.cluster_specifier {
        Some(tcp_proxy::ClusterSpecifier::Cluster(name)) if !name.is_empty() => name,
        Some(tcp_proxy::ClusterSpecifier::Cluster(_)) | None => {
            return Err("a cluster is required".into());
        }
        Some(tcp_proxy::ClusterSpecifier::WeightedClusters(_)) => {
            return Err("weighted_clusters is not supported yet".into());
        }
    };
    Ok(TcpProxySpec {
        stat_prefix: proxy.stat_prefix.clone(),
        cluster: Arc::from(cluster.as_str()),
    })
}

/// Whether the connection manager lets WebSocket upgrades through: istiod writes one
/// upgrade config, `websocket`, on every HTTP connection manager.
fn websocket_upgrade(hcm: &HttpConnectionManager) -> Result<bool, Reason> {
    let mut websocket = false;
    for (index, upgrade) in hcm.upgrade_configs.iter().enumerate() {
        let field = format!("http_connection_manager upgrade_configs[{index}]");
        if !upgrade
            .upgrade_type
            .eq_ignore_ascii_case(bosun_wire::upgrades::WEBSOCKET)
        {
            return Err(format!(
                "{field}: upgrade_type {:?} is not supported yet (websocket is)",
                upgrade.upgrade_type
            ));
        }
        if !upgrade.filters.is_empty() {
            return Err(format!("{field}: filters are not supported yet"));
        }
        websocket = upgrade.enabled.as_ref().is_none_or(|enabled| enabled.value);
    }
    Ok(websocket)
}

fn client_cert_header(hcm: &HttpConnectionManager) -> Result<ClientCertHeader, Reason> {
    use http_connection_manager::ForwardClientCertDetails as Mode;
    let details = hcm
        .set_current_client_cert_details
        .as_ref()
        .map(|details| CertDetails {
            subject: details.subject.is_some_and(|v| v.value),
            uri: details.uri,
            dns: details.dns,
        })
        .unwrap_or_default();
    let header = match Mode::try_from(hcm.forward_client_cert_details) {
        Ok(Mode::Sanitize) => ClientCertHeader::Sanitize,
        Ok(Mode::AppendForward) => ClientCertHeader::AppendForward(details),
        Ok(Mode::SanitizeSet) => ClientCertHeader::SanitizeSet(details),
        Ok(other) => {
            return Err(format!(
                "forward_client_cert_details {} is not supported yet",
                other.as_str_name()
            ));
        }
        Err(_) => {
            return Err(format!(
                "forward_client_cert_details {} is unknown",
                hcm.forward_client_cert_details
            ));
        }
    };
    if let Some(details) = &hcm.set_current_client_cert_details
        && (details.cert || details.chain)
    {
        return Err(
            "set_current_client_cert_details cert / chain are not supported yet (subject, uri and dns are)"
                .into(),
        );
    }
    Ok(header)
}

fn compile_hcm(hcm: &HttpConnectionManager) -> Result<(RouteSource, HttpFilterChain), Reason> {
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
    if hcm.tracing.is_some() {
        return Err("http_connection_manager tracing is not supported yet".into());
    }
    if !hcm.access_log.is_empty() {
        return Err("http_connection_manager access_log is not supported yet".into());
    }
    let filters = compile_http_filters(&hcm.http_filters)?;
    let routes: Result<RouteSource, Reason> = match &hcm.route_specifier {
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
    };
    Ok((routes?, filters))
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::google::protobuf::BoolValue;
    use http_connection_manager::UpgradeConfig;

    use super::*;

    fn upgrades(configs: Vec<UpgradeConfig>) -> Result<bool, Reason> {
        websocket_upgrade(&HttpConnectionManager {
            upgrade_configs: configs,
            ..Default::default()
        })
    }

    fn upgrade(kind: &str, enabled: Option<bool>) -> UpgradeConfig {
        UpgradeConfig {
            upgrade_type: kind.to_owned(),
            enabled: enabled.map(|value| BoolValue { value }),
            ..Default::default()
        }
    }

    #[test]
    fn websocket_is_the_upgrade_a_connection_manager_may_allow() {
        assert_eq!(upgrades(vec![]), Ok(false));
        assert_eq!(upgrades(vec![upgrade("websocket", None)]), Ok(true));
        assert_eq!(upgrades(vec![upgrade("WebSocket", Some(false))]), Ok(false));
        let connect = upgrades(vec![upgrade("CONNECT", None)]).unwrap_err();
        assert!(
            connect.contains("upgrade_type \"CONNECT\" is not supported yet"),
            "{connect}"
        );
    }
}
