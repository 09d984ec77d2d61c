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
/// The same port signs workload certificates (Istio's certificate service) and answers
/// SDS for Envoy: sidecars talk mutual TLS to every workload whose WorkloadEntry names a
/// serviceAccount (or carries security.istio.io/tlsMode: istio).
///
/// Examples:
///   bosun control-plane --config examples/bookinfo
///   curl http://127.0.0.1:15014/debug/syncz     # what each proxy acked or NACKed
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The folder of YAML files to serve.
    #[arg(long, env = "BOSUN_CONFIG", value_name = "DIR")]
    config: PathBuf,
    /// Address proxies connect to for ADS (gRPC).
    #[arg(long, env = "BOSUN_XDS_ADDRESS", default_value = "127.0.0.1:15010")]
    xds_address: SocketAddr,
    /// Address of the debug endpoint: /ready, /debug/syncz, /debug/configz.
    #[arg(long, env = "BOSUN_DEBUG_ADDRESS", default_value = "127.0.0.1:15014")]
    debug_address: SocketAddr,
    /// How long the folder must be quiet before a change is applied, e.g. 100ms.
    #[arg(long, default_value = "100ms", value_parser = parse_millis)]
    debounce: Duration,
    /// Trust domain of workload identities: spiffe://<trust-domain>/ns/<ns>/sa/<sa>.
    #[arg(long, env = "BOSUN_TRUST_DOMAIN", default_value = "cluster.local")]
    trust_domain: String,
    /// Istio's plug-in CA folder (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem).
    /// Without it the control plane makes a fresh self-signed root at every start.
    #[arg(long, env = "BOSUN_CA_DIR", value_name = "DIR")]
    ca_dir: Option<PathBuf>,
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
        "control plane ready"
    );
    bound.run(bosun::shutdown_signal()).await?;
    Ok(())
}
