//! `bosun control-plane`: serve a folder of Istio YAML to proxies over xDS.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use bosun_control_plane::{ControlPlane, ControlPlaneConfig, folder_watch::DEFAULT_DEBOUNCE};

/// Watch a folder of Istio YAML and serve it as Envoy xDS v3 (ADS).
///
/// Every `*.yaml`/`*.yml` file in the folder is read (VirtualService, DestinationRule,
/// ServiceEntry, WorkloadEntry). Edits apply as soon as the folder is quiet for a moment.
/// A file with errors is reported with file:line and keeps serving its last good version.
///
/// Proxies reach it over TLS (Istio's 15012) for ADS and for workload certificates
/// (Istio's certificate service). Every call carries the workload's token, and a proxy
/// gets only its own workload's config and identity. The mesh root is written to
/// <identity-dir>/root-cert.pem for proxies; tokens are checked with
/// <identity-dir>/token-key (made when missing; `bosun up` makes it and hands each proxy
/// its token).
///
/// Examples:
///   bosun control-plane --config examples/bookinfo --identity-dir /tmp/mesh
///   bosun control-plane --config examples/bookinfo --plaintext-xds-address 127.0.0.1:15010
///   curl http://127.0.0.1:15014/debug/syncz     # what each proxy acked or NACKed
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The folder of YAML files to serve.
    #[arg(long, env = "BOSUN_CONFIG", value_name = "DIR")]
    config: PathBuf,
    /// Address proxies connect to over TLS for ADS and certificates (gRPC).
    #[arg(long, env = "BOSUN_XDS_ADDRESS", default_value = "127.0.0.1:15012")]
    xds_address: SocketAddr,
    /// Also serve ADS in plaintext here (Istio's 15010), for debugging: no credential is
    /// checked and no certificate is signed on it.
    #[arg(long, env = "BOSUN_PLAINTEXT_XDS_ADDRESS")]
    plaintext_xds_address: Option<SocketAddr>,
    /// The identity folder: root-cert.pem (published), token-key, and the self-signed CA.
    #[arg(long, env = "BOSUN_IDENTITY_DIR", value_name = "DIR", default_value_os_t = default_identity_dir())]
    identity_dir: PathBuf,
    /// Address of the debug endpoint: /ready, /debug/syncz, /debug/configz.
    #[arg(long, env = "BOSUN_DEBUG_ADDRESS", default_value = "127.0.0.1:15014")]
    debug_address: SocketAddr,
    /// How often the key sets RequestAuthentications name by jwksUri are fetched again,
    /// so a key rotation reaches proxies without a config change: 20m, 30s, 500ms.
    #[arg(long, env = "BOSUN_JWKS_REFRESH", default_value = "20m", value_parser = bosun::parse_duration)]
    jwks_refresh: Duration,
    /// How long the folder must be quiet before a change is applied, e.g. 100ms.
    #[arg(long, default_value = "100ms", value_parser = parse_millis)]
    debounce: Duration,
    /// Trust domain of workload identities: spiffe://<trust-domain>/ns/<ns>/sa/<sa>.
    #[arg(long, env = "BOSUN_TRUST_DOMAIN", default_value = "cluster.local")]
    trust_domain: String,
    /// Istio's plug-in CA folder (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem;
    /// extra.pem: more roots to trust https:// jwksUri servers by). Without it the
    /// control plane keeps a self-signed root in the identity folder.
    #[arg(long, env = "BOSUN_CA_DIR", value_name = "DIR")]
    ca_dir: Option<PathBuf>,
}

/// `$XDG_RUNTIME_DIR/bosun` (private to the user), else `<tmp>/bosun-identity`.
fn default_identity_dir() -> PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(|dir| PathBuf::from(dir).join("bosun"))
        .unwrap_or_else(|| std::env::temp_dir().join("bosun-identity"))
}

fn parse_millis(text: &str) -> Result<Duration, String> {
    let millis = text
        .strip_suffix("ms")
        .ok_or_else(|| format!("expected milliseconds like 100ms, got {text:?}"))?;
    millis
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|error| format!("{text:?}: {error}"))
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let config = ControlPlaneConfig {
        config_dir: args.config.clone(),
        xds_address: args.xds_address,
        plaintext_xds_address: args.plaintext_xds_address,
        identity_dir: args.identity_dir,
        jwks_refresh: args.jwks_refresh.max(Duration::from_millis(100)),
        debug_address: args.debug_address,
        debounce: if args.debounce.is_zero() {
            DEFAULT_DEBOUNCE
        } else {
            args.debounce
        },
        trust_domain: args.trust_domain,
        ca_folder: args.ca_dir,
    };
    let bound = ControlPlane::bind(config)
        .await
        .with_context(|| format!("starting the control plane for {}", args.config.display()))?;
    tracing::info!(
        xds = %bound.xds_address(),
        debug = %bound.debug_address(),
        root_cert = %bound.root_cert_path().display(),
        "control plane ready"
    );
    bound.run(bosun::shutdown_signal()).await?;
    Ok(())
}
