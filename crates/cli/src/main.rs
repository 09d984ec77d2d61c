//! `bosun`: one binary for the whole mesh — control plane, proxy, local runner and tools.

mod control_plane_cmd;
mod proxy_cmd;
mod proxy_config;
mod sample;
mod up;

use clap::{Parser, Subcommand};

/// Bosun: a service mesh that speaks Istio's language.
///
/// Bring the Istio YAML you already have (VirtualService, DestinationRule, ServiceEntry,
/// WorkloadEntry) and run it: `bosun up examples/bookinfo` starts a whole mesh of local
/// processes on this machine.
#[derive(Debug, Parser)]
#[command(name = "bosun", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a whole local mesh from a folder of Istio YAML: control plane, one proxy per
    /// workload, the workloads, and a traffic generator, with a live table of traffic.
    Up(up::Args),
    /// Run the control plane: watch a config folder and serve Envoy xDS v3 (ADS) to proxies.
    ControlPlane(control_plane_cmd::Args),
    /// Run the Bosun sidecar proxy for one workload, configured over xDS.
    Proxy(proxy_cmd::Args),
    /// Show the listeners, routes, clusters and endpoints one proxy is running with.
    ProxyConfig(proxy_config::Args),
    /// Run the sample workload (an HTTP/1.1 + h2c echo service) or its traffic generator.
    Sample(sample::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // `up` speaks to its user in its own lines; its children log into the run folder.
    let default_level = match cli.command {
        Command::Up(_) => "warn",
        _ => "info",
    };
    init_logging(default_level);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Up(args) => up::run(args).await,
            Command::ControlPlane(args) => control_plane_cmd::run(args).await,
            Command::Proxy(args) => proxy_cmd::run(args).await,
            Command::ProxyConfig(args) => proxy_config::run(args).await,
            Command::Sample(args) => sample::run(args).await,
        }
    })
}

/// Logs to stderr at `default_level`; `RUST_LOG` (e.g. `debug`, `bosun_proxy=trace`)
/// picks what is shown instead.
fn init_logging(default_level: &str) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Completes on Ctrl-C or SIGTERM: the signals every long-running subcommand stops on.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
