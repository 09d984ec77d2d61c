//! `bosun token`: a workload token, for running proxies by hand.

use std::path::PathBuf;

use anyhow::Context;
use bosun_ca::TokenKey;
use bosun_control_plane::TOKEN_KEY_FILE;

/// Print a workload token signed with a control plane's token key.
///
/// What `bosun up` hands each proxy: a token naming one workload's namespace and service
/// account, which the control plane checks before it signs a certificate for that
/// identity or serves that workload's config. Keep it in a file only the workload can
/// read. Like `kubectl create token` for a service account.
///
/// Example: bosun token --identity-dir /tmp/mesh --namespace default
///          --service-account bookinfo-reviews > /tmp/mesh/reviews-v1.token
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The control plane's identity folder (it holds the token key).
    #[arg(long, env = "BOSUN_IDENTITY_DIR", value_name = "DIR")]
    identity_dir: PathBuf,
    /// The workload's namespace.
    #[arg(long, default_value = "default")]
    namespace: String,
    /// The workload's service account.
    #[arg(long, default_value = "default")]
    service_account: String,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let key = TokenKey::load(&args.identity_dir.join(TOKEN_KEY_FILE)).with_context(|| {
        format!(
            "no token key in {}: start the control plane with --identity-dir there first",
            args.identity_dir.display()
        )
    })?;
    println!("{}", key.mint(&args.namespace, &args.service_account));
    Ok(())
}
