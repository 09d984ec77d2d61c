//! Istio mutual TLS between sidecars, and TLS a DestinationRule originates, in Envoy's
//! terms.
//!
//! Certificates are never inlined: every TLS context names two SDS secrets, `default`
//! (the workload's own certificate and key) and `ROOTCA` (the mesh's trust anchors),
//! fetched over gRPC from the cluster `sds-grpc`, exactly as istiod writes them. That
//! cluster is the proxy's own business (its bootstrap says where it is), so the same
//! bytes serve every proxy. Bosun's proxy answers both names itself.

use envoy_types::pb::envoy::config::cluster::v3::cluster::TransportSocketMatch;
use envoy_types::pb::envoy::config::core::v3::{
    ApiConfigSource, ApiVersion, ConfigSource, GrpcService, TransportSocket, api_config_source,
    config_source, grpc_service, transport_socket,
};
use envoy_types::pb::envoy::config::listener::v3::{ListenerFilter, listener_filter};
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::transport_sockets::raw_buffer::v3::RawBuffer;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, SdsSecretConfig,
    SubjectAltNameMatcher, TlsParameters, UpstreamTlsContext, common_tls_context,
    subject_alt_name_matcher, tls_parameters,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
use envoy_types::pb::google::protobuf::{BoolValue, Duration, Struct, Value, value};
use envoy_types::util::pack_any;

use bosun_model::{OriginatedTls, Protocol, ServerVerification};
use bosun_wire::secrets::FileSecret;

pub use bosun_wire::secrets::{ROOT as ROOT_SECRET, WORKLOAD as WORKLOAD_SECRET};
/// The bootstrap cluster that serves both secrets.
pub const SDS_CLUSTER: &str = "sds-grpc";
/// Endpoint metadata key Envoy's transport socket matches read.
pub const TRANSPORT_SOCKET_MATCH: &str = "envoy.transport_socket_match";
/// The metadata field (and its value) marking an endpoint whose sidecar takes mTLS.
pub const TLS_MODE_KEY: &str = "tlsMode";
pub const TLS_MODE_ISTIO: &str = "istio";

const TLS_SOCKET: &str = "envoy.transport_sockets.tls";
const RAW_BUFFER_SOCKET: &str = "envoy.transport_sockets.raw_buffer";
const TLS_INSPECTOR: &str = "envoy.filters.listener.tls_inspector";

/// An outbound cluster's sockets under Istio's auto mTLS: TLS to the endpoints marked
/// `tlsMode: istio` (their sidecar takes it), plaintext to the rest.
///
/// `identities` are the SPIFFE URIs the server side may present; empty accepts any
/// identity the mesh root signed.
pub(super) fn auto_mtls(
    identities: &[String],
    sni: &str,
    protocol: Protocol,
) -> Vec<TransportSocketMatch> {
    vec![
        TransportSocketMatch {
            name: "tlsMode-istio".to_string(),
            r#match: Some(istio_tls_mode()),
            transport_socket: Some(upstream_mtls(identities, sni, protocol)),
        },
        TransportSocketMatch {
            name: "tlsMode-disabled".to_string(),
            r#match: Some(Struct::default()),
            transport_socket: Some(TransportSocket {
                name: RAW_BUFFER_SOCKET.to_string(),
                config_type: Some(transport_socket::ConfigType::TypedConfig(pack_any(
                    RawBuffer::default(),
                ))),
            }),
        },
    ]
}

/// The endpoint metadata that selects the mTLS socket of [`auto_mtls`].
pub(super) fn istio_tls_mode() -> Struct {
    let mut fields = Struct::default();
    fields.fields.insert(
        TLS_MODE_KEY.to_string(),
        Value {
            kind: Some(value::Kind::StringValue(TLS_MODE_ISTIO.to_string())),
        },
    );
    fields
}

pub(super) fn upstream_mtls(
    identities: &[String],
    sni: &str,
    protocol: Protocol,
) -> TransportSocket {
    let san_matchers = identities
        .iter()
        .map(|identity| SubjectAltNameMatcher {
            san_type: subject_alt_name_matcher::SanType::Uri as i32,
            matcher: Some(StringMatcher {
                match_pattern: Some(string_matcher::MatchPattern::Exact(identity.clone())),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    // Offered so the server's HTTP codec need not guess; both proxies also detect.
    // A TCP tunnel offers none: its bytes are the app's.
    let alpn: Vec<String> = match protocol {
        Protocol::Http2 => vec!["h2".to_string()],
        Protocol::Http => vec!["http/1.1".to_string()],
        _ => Vec::new(),
    };
    let context = UpstreamTlsContext {
        common_tls_context: Some(common_context(
            alpn,
            CertificateValidationContext {
                match_typed_subject_alt_names: san_matchers,
                ..Default::default()
            },
        )),
        sni: sni.to_string(),
        ..Default::default()
    };
    TransportSocket {
        name: TLS_SOCKET.to_string(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(pack_any(context))),
    }
}

/// TLS a DestinationRule originates (SIMPLE, MUTUAL), as istiod writes it: the files
/// it names are SDS secrets (`file-cert:`, `file-root:`) that whoever answers SDS reads,
/// so a renewed file needs no new cluster; `h2` is offered only to HTTP/2 clusters.
pub(super) fn upstream_originated(
    originated: &OriginatedTls,
    protocol: Protocol,
    h2_upgrade: bool,
) -> TransportSocket {
    let certificates = originated
        .client_certificate
        .iter()
        .map(|files| {
            sds_secret(
                &FileSecret::Certificate {
                    chain: &files.certificate,
                    key: &files.private_key,
                }
                .name(),
            )
        })
        .collect();
    let root = match &originated.verification {
        ServerVerification::Skip => None,
        ServerVerification::SystemRoots => Some(FileSecret::SystemRoots.name()),
        ServerVerification::CaFile(bundle) => Some(FileSecret::Root { bundle }.name()),
    };
    let validation = match root {
        // insecureSkipVerify: a validation context that checks nothing.
        None => common_tls_context::ValidationContextType::ValidationContext(
            CertificateValidationContext::default(),
        ),
        Some(root) => common_tls_context::ValidationContextType::CombinedValidationContext(
            common_tls_context::CombinedCertificateValidationContext {
                default_validation_context: Some(CertificateValidationContext {
                    match_typed_subject_alt_names: originated
                        .subject_alt_names
                        .iter()
                        .map(|name| san_matcher(name))
                        .collect(),
                    ..Default::default()
                }),
                validation_context_sds_secret_config: Some(sds_secret(&root)),
                ..Default::default()
            },
        ),
    };
    let http2 = protocol == Protocol::Http2 || h2_upgrade;
    let context = UpstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            tls_params: Some(TlsParameters {
                tls_maximum_protocol_version: tls_parameters::TlsProtocol::TlSv13 as i32,
                ..Default::default()
            }),
            alpn_protocols: if http2 {
                vec!["h2".to_string()]
            } else {
                Vec::new()
            },
            tls_certificate_sds_secret_configs: certificates,
            validation_context_type: Some(validation),
            ..Default::default()
        }),
        sni: originated.sni.clone().unwrap_or_default(),
        ..Default::default()
    };
    TransportSocket {
        name: TLS_SOCKET.to_string(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(pack_any(context))),
    }
}

/// A `subjectAltNames` entry matched exactly, as the kind of name it is: a URI (SPIFFE
/// identities), an IP address, else a DNS name.
fn san_matcher(name: &str) -> SubjectAltNameMatcher {
    use subject_alt_name_matcher::SanType;
    let san_type = if name.contains("://") {
        SanType::Uri
    } else if name.parse::<std::net::IpAddr>().is_ok() {
        SanType::IpAddress
    } else {
        SanType::Dns
    };
    SubjectAltNameMatcher {
        san_type: san_type as i32,
        matcher: Some(StringMatcher {
            match_pattern: Some(string_matcher::MatchPattern::Exact(name.to_string())),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The inbound side: terminate mTLS, requiring a certificate from the mesh's root.
pub(super) fn downstream_mtls() -> TransportSocket {
    let context = DownstreamTlsContext {
        common_tls_context: Some(common_context(
            vec!["h2".to_string(), "http/1.1".to_string()],
            CertificateValidationContext::default(),
        )),
        require_client_certificate: Some(BoolValue { value: true }),
        ..Default::default()
    };
    TransportSocket {
        name: TLS_SOCKET.to_string(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(pack_any(context))),
    }
}

/// Detects TLS on an inbound port, so one port takes mTLS and plaintext (PERMISSIVE).
pub(super) fn tls_inspector() -> ListenerFilter {
    ListenerFilter {
        name: TLS_INSPECTOR.to_string(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(pack_any(
            TlsInspector::default(),
        ))),
        ..Default::default()
    }
}

fn common_context(
    alpn_protocols: Vec<String>,
    validation: CertificateValidationContext,
) -> CommonTlsContext {
    CommonTlsContext {
        alpn_protocols,
        tls_certificate_sds_secret_configs: vec![sds_secret(WORKLOAD_SECRET)],
        validation_context_type: Some(
            common_tls_context::ValidationContextType::CombinedValidationContext(
                common_tls_context::CombinedCertificateValidationContext {
                    default_validation_context: Some(validation),
                    validation_context_sds_secret_config: Some(sds_secret(ROOT_SECRET)),
                    ..Default::default()
                },
            ),
        ),
        ..Default::default()
    }
}

fn sds_secret(name: &str) -> SdsSecretConfig {
    SdsSecretConfig {
        name: name.to_string(),
        sds_config: Some(ConfigSource {
            config_source_specifier: Some(config_source::ConfigSourceSpecifier::ApiConfigSource(
                ApiConfigSource {
                    api_type: api_config_source::ApiType::Grpc as i32,
                    transport_api_version: ApiVersion::V3 as i32,
                    set_node_on_first_message_only: true,
                    grpc_services: vec![GrpcService {
                        target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
                            grpc_service::EnvoyGrpc {
                                cluster_name: SDS_CLUSTER.to_string(),
                                ..Default::default()
                            },
                        )),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            )),
            // Istio waits for the certificate rather than warming without it.
            initial_fetch_timeout: Some(Duration {
                seconds: 0,
                nanos: 0,
            }),
            resource_api_version: ApiVersion::V3 as i32,
            ..Default::default()
        }),
    }
}
