//! Fetching the key sets RequestAuthentications name by `jwksUri`, as istiod does by
//! default: the control plane fetches them and writes them into the config, so proxies
//! need no route to the key server.
//!
//! Sets are kept for five minutes (a failure for 30 seconds) and fetched again at the
//! next reload after that; the control plane also refreshes them on a timer
//! (`--jwks-refresh`, Istio's PILOT_JWT_PUB_KEY_REFRESH_INTERVAL), so a key server's
//! rotation reaches proxies with no config change. `https://` (the server verified
//! against the system's roots and, as in Istio, the plug-in CA folder's `extra.pem`),
//! `http://` and, on one machine, `file://` are fetched.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};

/// How long a fetched set is used before it is fetched again.
const KEEP_FETCHED: Duration = Duration::from_secs(5 * 60);
/// How long a failure is remembered before the next try.
const KEEP_FAILED: Duration = Duration::from_secs(30);
/// The largest key set read.
const MAX_JWKS_BYTES: usize = 1 << 20;

#[derive(Debug, Default)]
pub struct JwksCache {
    entries: HashMap<String, (Instant, Result<String, String>)>,
    /// More roots to trust key servers by (a PEM bundle), beside the system's.
    extra_roots: Option<PathBuf>,
}

impl JwksCache {
    pub fn new(extra_roots: Option<PathBuf>) -> Self {
        JwksCache {
            entries: HashMap::new(),
            extra_roots,
        }
    }

    /// Whether any key set is held (the config names a `jwksUri`).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets every set, so the next reload fetches each again.
    pub fn expire(&mut self) {
        self.entries.clear();
    }

    /// The key set of each URI, fetched (within its timeout) when not known or too old.
    /// Failures are also reported in `warnings`.
    pub fn resolve(
        &mut self,
        uris: &[(String, Duration)],
        warnings: &mut Vec<String>,
    ) -> BTreeMap<String, Result<String, String>> {
        let now = Instant::now();
        let stale: Vec<(String, Duration)> = uris
            .iter()
            .filter(|(uri, _)| match self.entries.get(uri) {
                Some((at, Ok(_))) => now.duration_since(*at) > KEEP_FETCHED,
                Some((at, Err(_))) => now.duration_since(*at) > KEEP_FAILED,
                None => true,
            })
            .cloned()
            .collect();
        for (uri, result) in fetch_all(stale, self.extra_roots.as_deref()) {
            self.entries.insert(uri, (Instant::now(), result));
        }
        self.entries
            .retain(|uri, _| uris.iter().any(|(wanted, _)| wanted == uri));
        let mut out = BTreeMap::new();
        for (uri, _) in uris {
            let Some((_, result)) = self.entries.get(uri) else {
                continue;
            };
            if let Err(why) = result {
                warnings.push(format!(
                    "RequestAuthentication jwksUri {uri}: {why}; tokens of its issuer are refused until it can be fetched"
                ));
            }
            out.insert(uri.clone(), result.clone());
        }
        out
    }
}

/// Fetches every URI on a thread of its own (the caller may be on an async runtime).
fn fetch_all(
    uris: Vec<(String, Duration)>,
    extra_roots: Option<&Path>,
) -> Vec<(String, Result<String, String>)> {
    if uris.is_empty() {
        return Vec::new();
    }
    let tls = uris
        .iter()
        .any(|(uri, _)| uri.starts_with("https://"))
        .then(|| client_config(extra_roots));
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        return uris
                            .into_iter()
                            .map(|(uri, _)| {
                                (uri, Err(format!("no runtime to fetch with: {error}")))
                            })
                            .collect();
                    }
                };
                runtime.block_on(async move {
                    let tls = tls.as_ref();
                    let fetches = uris.into_iter().map(|(uri, timeout)| async move {
                        let result = fetch(&uri, timeout, tls).await;
                        (uri, result)
                    });
                    futures::future::join_all(fetches).await
                })
            })
            .join()
            .unwrap_or_default()
    })
}

async fn fetch(
    uri: &str,
    timeout: Duration,
    tls: Option<&Result<Arc<rustls::ClientConfig>, String>>,
) -> Result<String, String> {
    if let Some(path) = uri.strip_prefix("file://") {
        return tokio::fs::read_to_string(path)
            .await
            .map_err(|error| format!("cannot read {path}: {error}"));
    }
    let parsed: http::Uri = uri.parse().map_err(|error| format!("not a URI: {error}"))?;
    let request = async {
        let executor = hyper_util::rt::TokioExecutor::new();
        let builder = hyper_util::client::legacy::Client::builder(executor);
        let response = match tls {
            // Only URIs of this scheme get here with a config (see `fetch_all`).
            Some(Ok(config)) if parsed.scheme_str() == Some("https") => {
                let connector = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(rustls::ClientConfig::clone(config))
                    .https_only()
                    .enable_http1()
                    .build();
                builder
                    .build::<_, Empty<Bytes>>(connector)
                    .get(parsed)
                    .await
            }
            Some(Err(why)) if parsed.scheme_str() == Some("https") => return Err(why.clone()),
            _ => builder.build_http::<Empty<Bytes>>().get(parsed).await,
        }
        .map_err(|error| format!("cannot fetch: {error}"))?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        let body = http_body_util::Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|error| format!("cannot read the answer: {error}"))?
            .to_bytes();
        String::from_utf8(body.to_vec()).map_err(|_| "the answer is not UTF-8".to_owned())
    };
    tokio::time::timeout(timeout, request)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
}

/// The TLS client key servers are reached with: the system's roots and `extra`'s.
fn client_config(extra: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let system = rustls_native_certs::load_native_certs();
    for certificate in system.certs {
        // A system root webpki cannot use is skipped, as the system's own clients do.
        let _ = roots.add(certificate);
    }
    if let Some(extra) = extra.filter(|path| path.is_file()) {
        let certificates = CertificateDer::pem_file_iter(extra)
            .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
            .map_err(|error| format!("cannot read {}: {error}", extra.display()))?;
        for certificate in certificates {
            roots
                .add(certificate)
                .map_err(|error| format!("{}: {error}", extra.display()))?;
        }
    }
    if roots.is_empty() {
        return Err(
            "no roots to verify the key server by (no system roots; add the key server's CA as extra.pem in the CA folder)"
                .to_owned(),
        );
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| error.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    use super::*;

    const KEYS: &str = r#"{"keys":[]}"#;

    /// A key server over HTTPS on loopback with a certificate from a CA of its own;
    /// returns its address and the CA's PEM.
    fn https_key_server() -> (SocketAddr, String) {
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_pem = ca.self_signed(&ca_key).expect("CA").pem();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().expect("key");
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .expect("params")
            .signed_by(&key, &issuer)
            .expect("certificate");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(leaf.der().to_vec())],
            PrivateKeyDer::try_from(key.serialize_der()).expect("key"),
        )
        .expect("server config");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        listener.set_nonblocking(true).expect("nonblocking");
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let Ok(stream) = acceptor.accept(stream).await else {
                            return;
                        };
                        let service = hyper::service::service_fn(|_| async {
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(Bytes::from_static(KEYS.as_bytes())),
                            ))
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
        (address, ca_pem)
    }

    #[test]
    fn https_key_sets_are_fetched_from_a_server_the_extra_roots_trust() {
        let (address, ca_pem) = https_key_server();
        let uri = format!("https://{address}/jwks");
        let wanted = [(uri.clone(), Duration::from_secs(5))];

        // Neither the system's roots nor any extra trust the server's CA.
        let mut untrusted = JwksCache::new(None);
        let mut warnings = Vec::new();
        let fetched = untrusted.resolve(&wanted, &mut warnings);
        let refused = fetched[&uri]
            .as_ref()
            .expect_err("an unknown CA is refused");
        assert!(refused.contains("cannot fetch"), "{refused}");
        assert_eq!(warnings.len(), 1, "{warnings:?}");

        let dir = tempfile::tempdir().expect("dir");
        let extra = dir.path().join("extra.pem");
        std::fs::write(&extra, ca_pem).expect("write extra.pem");
        let mut trusted = JwksCache::new(Some(extra));
        let mut warnings = Vec::new();
        let fetched = trusted.resolve(&wanted, &mut warnings);
        assert_eq!(fetched[&uri].as_deref(), Ok(KEYS), "{warnings:?}");
        assert!(warnings.is_empty(), "{warnings:?}");
    }
}
