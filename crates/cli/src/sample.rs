//! `bosun sample`: the sample workload the local mesh and the tests run, and its traffic
//! generator.
//!
//! - `bosun sample serve`: an HTTP/1.1 + h2c echo service that calls its downstream
//!   services through the sidecar and answers with the whole call tree as JSON.
//! - `bosun sample load`: a fixed-rate traffic generator that reads those trees and serves
//!   per-service, per-version statistics over HTTP (what `bosun up` shows live).
//! - `bosun sample ext-authz`: an external authorizer for CUSTOM policies (Envoy's HTTP
//!   and gRPC check APIs).

pub(crate) mod client;
pub(crate) mod duration;
mod ext_authz;
mod http_server;
mod load;
pub(crate) mod report;
pub(crate) mod serve;
pub(crate) mod stats;

/// Run the sample workload or its traffic generator.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: SampleCommand,
}

#[derive(Debug, clap::Subcommand)]
enum SampleCommand {
    /// Serve the sample workload: an echo service that calls its downstream services and
    /// answers with the whole call tree as JSON.
    // `--version` is the version the workload reports, not bosun's.
    #[command(disable_version_flag = true)]
    Serve(Box<serve::Args>),
    /// Send traffic at a fixed rate and serve per-service statistics of the responses.
    Load(Box<load::Args>),
    /// Serve an external authorizer for CUSTOM AuthorizationPolicies: allows a request
    /// with `x-ext-authz: allow`, over Envoy's HTTP and gRPC check APIs.
    ExtAuthz(ext_authz::Args),
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        SampleCommand::Serve(args) => serve::run(*args).await,
        SampleCommand::Load(args) => load::run(*args).await,
        SampleCommand::ExtAuthz(args) => ext_authz::run(args).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    /// The command line as `bosun` builds it (with a propagated `--version`).
    #[derive(Debug, clap::Parser)]
    #[command(name = "bosun", version, propagate_version = true)]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Command {
        Sample(super::Args),
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
        let parsed = Cli::try_parse_from([
            "bosun",
            "sample",
            "serve",
            "--service",
            "reviews",
            "--version",
            "v2",
            "--call",
            "http://ratings:9080/ratings",
            "--latency",
            "5ms",
            "--error-rate",
            "0.1",
        ]);
        assert!(parsed.is_ok(), "{parsed:?}");
        let parsed = Cli::try_parse_from([
            "bosun",
            "sample",
            "load",
            "--header",
            "end-user: jason",
            "--header-ratio",
            "0.25",
        ]);
        assert!(parsed.is_ok(), "{parsed:?}");
    }
}
