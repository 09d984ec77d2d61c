//! `bosun-proxy`: Bosun's sidecar on its own, the binary that runs beside each workload.
//!
//! The same proxy and flags as `bosun proxy`, without the control plane, `up` and the
//! tools linked in, so a sidecar maps only the code it runs.

use clap::Parser;

/// Bosun's sidecar proxy for one workload, configured over xDS (same flags as `bosun proxy`).
#[derive(Debug, Parser)]
#[command(name = "bosun-proxy", version)]
struct Cli {
    #[command(flatten)]
    proxy: bosun::proxy_cmd::Args,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    bosun::init_logging("info");
    bosun::proxy_cmd::main(cli.proxy)
}
