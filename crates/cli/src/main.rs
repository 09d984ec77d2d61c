//! `bosun`: one binary for the whole mesh — control plane, proxy, local runner and tools.

mod agent_cmd;
mod control_plane_cmd;
mod proxy_config;
mod sample;
mod token_cmd;
mod up;

use bosun::proxy_cmd;
use clap::{Parser, Subcommand};

/// The control plane builds and frees a whole generation of the mesh per change, over a
/// heap shared with a thousand streams: with glibc's allocator a 10k-service reload took
/// 1.2 s, with mimalloc 0.3 s (bench/xds-scale). The lean sidecar, `bosun-proxy`, keeps
/// glibc's: there mimalloc cost 8 MiB of RSS (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Keep a workload's certificate for a real Envoy and serve it over SDS (Istio's
    /// pilot-agent, for certificates).
    Agent(agent_cmd::Args),
    /// Show the listeners, routes, clusters and endpoints one proxy is running with.
    ProxyConfig(proxy_config::Args),
    /// Print a workload token for running a proxy by hand (bosun up hands them out itself).
    Token(token_cmd::Args),
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
    bosun::init_logging(default_level);
    match cli.command {
        // The proxy sizes its own runtime (`--concurrency`).
        Command::Proxy(args) => proxy_cmd::main(args),
        Command::Up(args) => block_on(up::run(args)),
        Command::ControlPlane(args) => block_on(control_plane_cmd::run(args)),
        Command::Agent(args) => block_on(agent_cmd::run(args)),
        Command::ProxyConfig(args) => block_on(proxy_config::run(args)),
        Command::Sample(args) => block_on(sample::run(args)),
        Command::Token(args) => token_cmd::run(args),
    }
}

/// Runs a subcommand on a runtime with a worker per core.
fn block_on(command: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(command)
}
