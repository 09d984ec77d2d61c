//! `bosun up <folder>`: a whole mesh of local processes from a folder of Istio YAML.
//!
//! The folder holds Istio's resources (ServiceEntry, WorkloadEntry, VirtualService,
//! DestinationRule) and one `LocalWorkload` per process to run. `bosun up` starts the
//! control plane on the folder, a sidecar (Bosun's proxy or a real Envoy) and the app for
//! each LocalWorkload, then shows live traffic from the traffic generators (LocalWorkloads
//! running `{bosun} sample load`, whose `/stats` it reads) until Ctrl-C or SIGTERM. A
//! process that dies is started again; the view says what died, why, and when it is back.
//! See docs/design/local-mesh.md for the conventions (addresses, ports, environment).

mod credentials;
mod envoy;
mod events;
mod live;
mod mesh;
mod plan;
mod process;
mod progress;
mod readiness;
mod supervise;
mod table;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use events::EventLog;
use mesh::{LocalMesh, MeshOptions};
use progress::ProgressMode;

use crate::sample::duration::parse_duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The folder of Istio YAML and LocalWorkloads to run.
    folder: PathBuf,
    /// Where logs and generated files go [default: <tmp>/bosun-up-<pid>].
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// The control plane's xDS port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    xds_port: u16,
    /// The control plane's debug port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    debug_port: u16,
    /// How long each process may take to be ready.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    ready_timeout: Duration,
    /// How often the traffic table is refreshed.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    refresh: Duration,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let bosun_exe = std::env::current_exe().context("cannot find the bosun binary's path")?;
    let mut options = MeshOptions::new(bosun_exe);
    options.run_dir = args.run_dir;
    options.xds_port = args.xds_port;
    options.debug_port = args.debug_port;
    options.ready_timeout = args.ready_timeout;
    options.progress = ProgressMode::for_stdout();

    let mesh = tokio::select! {
        started = LocalMesh::start(&args.folder, options) => started?,
        // Interrupted while starting: `start` is dropped, and the processes with it.
        () = bosun::shutdown_signal() => {
            println!("interrupted while starting");
            return Ok(());
        }
    };

    let mut mesh = mesh;
    let sources = table::TrafficSources::new(mesh.stats_addresses());
    if sources.is_empty() {
        println!(
            "no traffic generator in {} (a LocalWorkload running `{{bosun}} sample load`); \
             the mesh runs until Ctrl-C",
            mesh.folder().display()
        );
    }
    let events = EventLog::new();
    let view = live::LiveView {
        traffic: sources,
        events: events.clone(),
        control_plane: mesh.control_plane().map(|addresses| addresses.debug),
    };
    let redraw = std::io::stdout().is_terminal();
    tokio::select! {
        () = bosun::shutdown_signal() => {}
        // Neither ends on its own: a process that exits is restarted, and the view
        // refreshes until Ctrl-C.
        () = mesh.supervise(&events) => {}
        () = live::show(view, args.refresh, redraw) => {}
    }
    println!("stopping the mesh");
    mesh.shutdown().await;
    println!("stopped");
    Ok(())
}
