//! Fetching the key sets RequestAuthentications name by `jwksUri`, as istiod does by
//! default: the control plane fetches them and writes them into the config, so proxies
//! need no route to the key server.
//!
//! Sets are kept for five minutes (a failure for 30 seconds) and fetched again at the
//! next reload after that; the control plane also refreshes them on a timer
//! (`--jwks-refresh`, Istio's PILOT_JWT_PUB_KEY_REFRESH_INTERVAL), so a key server's
//! rotation reaches proxies with no config change. `http://` and, on one machine,
//! `file://` are fetched.

use std::collections::{BTreeMap, HashMap};
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
}

impl JwksCache {
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
        for (uri, result) in fetch_all(stale) {
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
fn fetch_all(uris: Vec<(String, Duration)>) -> Vec<(String, Result<String, String>)> {
    if uris.is_empty() {
        return Vec::new();
    }
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
                    let fetches = uris.into_iter().map(|(uri, timeout)| async move {
                        let result = fetch(&uri, timeout).await;
                        (uri, result)
                    });
                    futures::future::join_all(fetches).await
                })
            })
            .join()
            .unwrap_or_default()
    })
}

async fn fetch(uri: &str, timeout: Duration) -> Result<String, String> {
    if let Some(path) = uri.strip_prefix("file://") {
        return tokio::fs::read_to_string(path)
            .await
            .map_err(|error| format!("cannot read {path}: {error}"));
    }
    if uri.starts_with("https://") {
        return Err(
            "fetching over https is not supported yet (serve it over http, or write the set inline as jwks)"
                .to_owned(),
        );
    }
    let parsed: http::Uri = uri.parse().map_err(|error| format!("not a URI: {error}"))?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let request = async {
        let response = client
            .get(parsed)
            .await
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
