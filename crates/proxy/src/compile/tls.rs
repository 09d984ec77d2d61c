//! Transport sockets → TLS specs: Istio mutual TLS as istiod writes it, with both
//! secrets (`default`, `ROOTCA`) answered by the proxy's own certificate, and TLS a
//! DestinationRule originates, whose secrets name files the proxy reads ([`own`]).

mod own;

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::cluster::v3::cluster::TransportSocketMatch;
use envoy_types::pb::envoy::config::core::v3::{Metadata, TransportSocket, transport_socket};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, SdsSecretConfig,
    UpstreamTlsContext, common_tls_context, subject_alt_name_matcher,
};
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher;
use envoy_types::pb::google::protobuf::value::Kind;

use super::{Reason, decode_any, type_url_of};
use crate::tls::{ROOT_SECRET, WORKLOAD_SECRET};
use bosun_wire::secrets::FileSecret;

pub use own::{OwnTls, SanName};

const TLS_SOCKET: &str = "envoy.transport_sockets.tls";
const RAW_BUFFER_SOCKET: &str = "envoy.transport_sockets.raw_buffer";
const UPSTREAM_TLS_TYPE: &str = "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
const DOWNSTREAM_TLS_TYPE: &str = "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";
const RAW_BUFFER_TYPE: &str = "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer";
/// The endpoint metadata namespace transport socket matches read.
pub const TRANSPORT_SOCKET_MATCH: &str = "envoy.transport_socket_match";

/// TLS to an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    pub alpn: Vec<String>,
    /// The SNI sent; empty: none (or the request's host, under the cluster's auto SNI).
    pub sni: String,
    pub trust: UpstreamTrust,
}

impl UpstreamTls {
    /// Istio mutual TLS, to another sidecar.
    pub fn is_mesh(&self) -> bool {
        matches!(self.trust, UpstreamTrust::Mesh { .. })
    }
}

/// Who the two ends are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamTrust {
    /// Istio mutual TLS with the workload certificate: the server's SPIFFE identity is
    /// one of `identities` (any the mesh root signed when empty).
    Mesh { identities: Vec<String> },
    /// TLS of the destination's own, with certificates from files (a DestinationRule's
    /// SIMPLE or MUTUAL).
    Own(OwnTls),
}

/// Mutual TLS terminated on a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownstreamTls {
    pub alpn: Vec<String>,
}

/// A cluster's choice of transport per endpoint (Envoy's transport socket matches).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TransportSockets {
    /// Tried in order against an endpoint's `envoy.transport_socket_match` metadata: the
    /// first whose fields the endpoint all carries decides (`None`: plaintext).
    pub matches: Vec<(BTreeMap<String, String>, Option<UpstreamTls>)>,
    /// The cluster's own socket, when no match applies.
    pub default: Option<UpstreamTls>,
}

pub(super) fn transport_sockets(
    socket: Option<&TransportSocket>,
    matches: &[TransportSocketMatch],
) -> Result<TransportSockets, Reason> {
    let default = match socket {
        Some(socket) => upstream_socket(socket).map_err(|r| format!("transport_socket: {r}"))?,
        None => None,
    };
    let mut compiled = Vec::with_capacity(matches.len());
    for (index, entry) in matches.iter().enumerate() {
        let field = format!("transport_socket_matches[{index}] ({})", entry.name);
        let wanted = string_fields(entry.r#match.as_ref().map(|m| &m.fields))
            .map_err(|r| format!("{field}.match: {r}"))?;
        let tls = match &entry.transport_socket {
            Some(socket) => upstream_socket(socket).map_err(|r| format!("{field}: {r}"))?,
            None => None,
        };
        compiled.push((wanted, tls));
    }
    Ok(TransportSockets {
        matches: compiled,
        default,
    })
}

/// An endpoint's `envoy.transport_socket_match` metadata.
pub(super) fn endpoint_socket_match(
    metadata: Option<&Metadata>,
) -> Result<BTreeMap<String, String>, Reason> {
    let fields = metadata
        .and_then(|m| m.filter_metadata.get(TRANSPORT_SOCKET_MATCH))
        .map(|s| &s.fields);
    string_fields(fields).map_err(|r| format!("metadata {TRANSPORT_SOCKET_MATCH}: {r}"))
}

fn string_fields(
    fields: Option<&std::collections::HashMap<String, envoy_types::pb::google::protobuf::Value>>,
) -> Result<BTreeMap<String, String>, Reason> {
    let mut out = BTreeMap::new();
    for (key, value) in fields.into_iter().flatten() {
        let Some(Kind::StringValue(value)) = &value.kind else {
            return Err(format!(
                "field {key} is not a string; only strings are matched"
            ));
        };
        out.insert(key.clone(), value.clone());
    }
    Ok(out)
}

fn upstream_socket(socket: &TransportSocket) -> Result<Option<UpstreamTls>, Reason> {
    let Some(context) = upstream_context(socket)? else {
        return Ok(None);
    };
    if context.allow_renegotiation || context.max_session_keys.is_some() {
        return Err("allow_renegotiation / max_session_keys are not supported".into());
    }
    let common = context
        .common_tls_context
        .as_ref()
        .ok_or("an UpstreamTlsContext needs a common_tls_context")?;
    if names_own_files(common) {
        return Ok(Some(UpstreamTls {
            alpn: common.alpn_protocols.clone(),
            sni: context.sni,
            trust: UpstreamTrust::Own(own::compile(common)?),
        }));
    }
    let (alpn, validation) = mesh_context(common)?;
    let mut identities = Vec::new();
    for (index, matcher) in validation.match_typed_subject_alt_names.iter().enumerate() {
        let field = format!("match_typed_subject_alt_names[{index}]");
        if matcher.san_type != subject_alt_name_matcher::SanType::Uri as i32 {
            return Err(format!(
                "{field}: only URI SANs (SPIFFE identities) are supported"
            ));
        }
        match matcher
            .matcher
            .as_ref()
            .and_then(|m| m.match_pattern.as_ref())
        {
            Some(string_matcher::MatchPattern::Exact(identity)) => {
                identities.push(identity.clone())
            }
            _ => return Err(format!("{field}: only exact matches are supported")),
        }
    }
    Ok(Some(UpstreamTls {
        alpn,
        sni: context.sni,
        trust: UpstreamTrust::Mesh { identities },
    }))
}

/// A context whose secrets are files, or that validates nothing: TLS of the
/// destination's own rather than the mesh's.
fn names_own_files(common: &CommonTlsContext) -> bool {
    use common_tls_context::ValidationContextType;
    let files = |secret: &SdsSecretConfig| FileSecret::parse(&secret.name).is_some();
    common.tls_certificate_sds_secret_configs.iter().any(files)
        || match &common.validation_context_type {
            Some(ValidationContextType::CombinedValidationContext(combined)) => combined
                .validation_context_sds_secret_config
                .as_ref()
                .is_some_and(files),
            Some(ValidationContextType::ValidationContextSdsSecretConfig(secret)) => files(secret),
            Some(ValidationContextType::ValidationContext(_)) => true,
            _ => false,
        }
}

/// The UpstreamTlsContext of a TLS socket; `None` for plaintext.
fn upstream_context(socket: &TransportSocket) -> Result<Option<UpstreamTlsContext>, Reason> {
    let Some(transport_socket::ConfigType::TypedConfig(any)) = &socket.config_type else {
        return match socket.name.as_str() {
            RAW_BUFFER_SOCKET => Ok(None),
            name => Err(format!("transport socket {name} has no typed_config")),
        };
    };
    if any.type_url == type_url_of(RAW_BUFFER_TYPE) {
        return Ok(None);
    }
    if any.type_url != type_url_of(UPSTREAM_TLS_TYPE) {
        return Err(format!(
            "transport socket {} is not supported",
            any.type_url
        ));
    }
    decode_any(any, &type_url_of(UPSTREAM_TLS_TYPE)).map(Some)
}

pub(super) fn downstream_socket(socket: &TransportSocket) -> Result<DownstreamTls, Reason> {
    let Some(transport_socket::ConfigType::TypedConfig(any)) = &socket.config_type else {
        return Err(format!(
            "transport socket {} has no typed_config",
            socket.name
        ));
    };
    if any.type_url != type_url_of(DOWNSTREAM_TLS_TYPE) {
        return Err(format!(
            "transport socket {} is not supported on a listener ({TLS_SOCKET} with a DownstreamTlsContext is)",
            any.type_url
        ));
    }
    let context: DownstreamTlsContext = decode_any(any, &type_url_of(DOWNSTREAM_TLS_TYPE))?;
    if !context.require_client_certificate.is_some_and(|v| v.value) {
        return Err(
            "only mutual TLS is supported on listeners: set require_client_certificate".into(),
        );
    }
    if context.require_sni.is_some_and(|v| v.value) || context.session_ticket_keys_type.is_some() {
        return Err("require_sni / session ticket keys are not supported".into());
    }
    let common = context
        .common_tls_context
        .as_ref()
        .ok_or("a DownstreamTlsContext needs a common_tls_context")?;
    let (alpn, validation) = mesh_context(common)?;
    if !validation.match_typed_subject_alt_names.is_empty() {
        return Err(
            "matching the client's SANs is not supported; authorize callers with an AuthorizationPolicy"
                .into(),
        );
    }
    Ok(DownstreamTls { alpn })
}

/// The mesh's own TLS context: the workload certificate from SDS `default`, validated
/// against SDS `ROOTCA`. Returns the ALPN list and the inline validation settings.
fn mesh_context(
    common: &CommonTlsContext,
) -> Result<(Vec<String>, CertificateValidationContext), Reason> {
    if !common.tls_certificates.is_empty() || common.tls_certificate_provider_instance.is_some() {
        return Err(format!(
            "only SDS certificates are supported: name the secret {WORKLOAD_SECRET:?}"
        ));
    }
    match common.tls_certificate_sds_secret_configs.as_slice() {
        [secret] => require_secret(secret, WORKLOAD_SECRET)?,
        other => {
            return Err(format!(
                "exactly one tls_certificate_sds_secret_config ({WORKLOAD_SECRET:?}) is supported, found {}",
                other.len()
            ));
        }
    }
    use common_tls_context::ValidationContextType;
    let validation = match &common.validation_context_type {
        Some(ValidationContextType::CombinedValidationContext(combined)) => {
            let secret = combined
                .validation_context_sds_secret_config
                .as_ref()
                .ok_or("combined_validation_context needs validation_context_sds_secret_config")?;
            require_secret(secret, ROOT_SECRET)?;
            combined
                .default_validation_context
                .clone()
                .unwrap_or_default()
        }
        Some(ValidationContextType::ValidationContextSdsSecretConfig(secret)) => {
            require_secret(secret, ROOT_SECRET)?;
            CertificateValidationContext::default()
        }
        _ => {
            return Err(format!(
                "the peer must be validated against the SDS secret {ROOT_SECRET:?}"
            ));
        }
    };
    #[allow(deprecated)]
    let unsupported_validation = validation.trusted_ca.is_some()
        || !validation.verify_certificate_spki.is_empty()
        || !validation.verify_certificate_hash.is_empty()
        || !validation.match_subject_alt_names.is_empty()
        || validation.crl.is_some()
        || validation.custom_validator_config.is_some();
    if unsupported_validation {
        return Err(
            "validation beyond the mesh root and URI SANs (trusted_ca, spki/hash pins, CRLs, custom validators) is not supported"
                .into(),
        );
    }
    Ok((common.alpn_protocols.clone(), validation))
}

fn require_secret(secret: &SdsSecretConfig, expected: &str) -> Result<(), Reason> {
    if secret.name != expected {
        return Err(format!(
            "SDS secret {:?} is not known: the proxy answers {WORKLOAD_SECRET:?} (its certificate) and {ROOT_SECRET:?} (the mesh root)",
            secret.name
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::core::v3::{ConfigSource, Metadata};
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
        SubjectAltNameMatcher, TlsCertificate,
    };
    use envoy_types::pb::envoy::r#type::matcher::v3::StringMatcher;
    use envoy_types::pb::google::protobuf::{BoolValue, Struct, Value};
    use envoy_types::util::pack_any;

    use super::*;

    fn secret(name: &str) -> SdsSecretConfig {
        SdsSecretConfig {
            name: name.to_string(),
            sds_config: Some(ConfigSource::default()),
        }
    }

    fn mesh_common(alpn: &[&str], identities: &[&str]) -> CommonTlsContext {
        CommonTlsContext {
            alpn_protocols: alpn.iter().map(|p| p.to_string()).collect(),
            tls_certificate_sds_secret_configs: vec![secret(WORKLOAD_SECRET)],
            validation_context_type: Some(
                common_tls_context::ValidationContextType::CombinedValidationContext(
                    common_tls_context::CombinedCertificateValidationContext {
                        default_validation_context: Some(CertificateValidationContext {
                            match_typed_subject_alt_names: identities
                                .iter()
                                .map(|identity| SubjectAltNameMatcher {
                                    san_type: subject_alt_name_matcher::SanType::Uri as i32,
                                    matcher: Some(StringMatcher {
                                        match_pattern: Some(string_matcher::MatchPattern::Exact(
                                            identity.to_string(),
                                        )),
                                        ..Default::default()
                                    }),
                                    ..Default::default()
                                })
                                .collect(),
                            ..Default::default()
                        }),
                        validation_context_sds_secret_config: Some(secret(ROOT_SECRET)),
                        ..Default::default()
                    },
                ),
            ),
            ..Default::default()
        }
    }

    fn socket(any: envoy_types::pb::google::protobuf::Any) -> TransportSocket {
        TransportSocket {
            name: TLS_SOCKET.to_string(),
            config_type: Some(transport_socket::ConfigType::TypedConfig(any)),
        }
    }

    fn istio_match() -> Struct {
        let mut fields = Struct::default();
        fields.fields.insert(
            "tlsMode".to_string(),
            Value {
                kind: Some(Kind::StringValue("istio".to_string())),
            },
        );
        fields
    }

    #[test]
    fn auto_mtls_sockets_compile_per_endpoint_metadata() {
        let tls = socket(pack_any(UpstreamTlsContext {
            common_tls_context: Some(mesh_common(&["h2"], &["spiffe://td/ns/a/sa/b"])),
            sni: "outbound_.80_._.b.a.svc.cluster.local".to_string(),
            ..Default::default()
        }));
        let matches = vec![
            TransportSocketMatch {
                name: "tlsMode-istio".into(),
                r#match: Some(istio_match()),
                transport_socket: Some(tls),
            },
            TransportSocketMatch {
                name: "tlsMode-disabled".into(),
                r#match: Some(Struct::default()),
                transport_socket: None,
            },
        ];
        let sockets = transport_sockets(None, &matches).expect("compiles");
        assert_eq!(sockets.matches.len(), 2);
        let upstream = sockets.matches[0]
            .1
            .as_ref()
            .expect("TLS for istio endpoints");
        assert_eq!(
            upstream.trust,
            UpstreamTrust::Mesh {
                identities: vec!["spiffe://td/ns/a/sa/b".to_string()]
            }
        );
        assert_eq!(upstream.alpn, ["h2"]);
        assert!(sockets.matches[1].1.is_none());

        let metadata = Metadata {
            filter_metadata: [(TRANSPORT_SOCKET_MATCH.to_string(), istio_match())].into(),
            ..Default::default()
        };
        let read = endpoint_socket_match(Some(&metadata)).expect("metadata");
        assert_eq!(read.get("tlsMode").map(String::as_str), Some("istio"));
    }

    #[test]
    fn secrets_the_proxy_cannot_answer_are_refused_by_name() {
        let mut common = mesh_common(&[], &[]);
        common.tls_certificate_sds_secret_configs = vec![secret("my-cert")];
        let refused = upstream_socket(&socket(pack_any(UpstreamTlsContext {
            common_tls_context: Some(common),
            ..Default::default()
        })))
        .expect_err("refused");
        assert!(refused.contains("\"my-cert\""), "{refused}");

        let mut inline = mesh_common(&[], &[]);
        inline.tls_certificates = vec![TlsCertificate::default()];
        let refused = upstream_socket(&socket(pack_any(UpstreamTlsContext {
            common_tls_context: Some(inline),
            ..Default::default()
        })))
        .expect_err("refused");
        assert!(refused.contains("only SDS certificates"), "{refused}");
    }

    #[test]
    fn listeners_terminate_only_mutual_tls() {
        let mtls = downstream_socket(&socket(pack_any(DownstreamTlsContext {
            common_tls_context: Some(mesh_common(&["h2", "http/1.1"], &[])),
            require_client_certificate: Some(BoolValue { value: true }),
            ..Default::default()
        })))
        .expect("mutual TLS compiles");
        assert_eq!(mtls.alpn, ["h2", "http/1.1"]);

        let one_way = downstream_socket(&socket(pack_any(DownstreamTlsContext {
            common_tls_context: Some(mesh_common(&[], &[])),
            ..Default::default()
        })))
        .expect_err("refused");
        assert!(one_way.contains("require_client_certificate"), "{one_way}");
    }
}
