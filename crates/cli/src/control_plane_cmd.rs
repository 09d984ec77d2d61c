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
