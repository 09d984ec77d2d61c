//! `bosun agent`: the certificate agent beside a real Envoy (Istio's pilot-agent, for
//! certificates).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use bosun_proxy::control_plane::ControlPlaneLink;
use bosun_proxy::sds_agent::SdsAgent;

/// Keep a workload's certificate for a real Envoy and serve it over SDS.
///
/// The agent makes the workload's key, has the control plane's CA sign it (the token
/// proves the identity), renews it at half its life, and serves it with the mesh root to
/// Envoy on a Unix socket only this user can open. Envoy's bootstrap names the socket
/// (bosun up writes both).
///
/// Example: bosun agent --namespace default --service-account bookinfo-reviews
///          --root-cert /tmp/mesh/root-cert.pem --token-file /tmp/mesh/reviews-v1.token
///          --sds-socket /tmp/mesh/reviews-v1.sds.sock
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The control plane's certificate service (https:// for TLS, Istio's 15012).
    #[arg(
        long,
        env = "BOSUN_CA_ADDRESS",
        default_value = "https://127.0.0.1:15012"
    )]
    ca_address: String,
    /// The mesh root (PEM), handed out of band.
    #[arg(long, env = "BOSUN_ROOT_CERT", value_name = "FILE")]
    root_cert: PathBuf,
    /// The workload's token.
    #[arg(long, env = "BOSUN_TOKEN_FILE", value_name = "FILE")]
    token_file: PathBuf,
    /// Trust domain of the workload's SPIFFE identity.
    #[arg(long, env = "BOSUN_TRUST_DOMAIN", default_value = "cluster.local")]
    trust_domain: String,
    /// The workload's namespace.
    #[arg(long, env = "BOSUN_NAMESPACE", default_value = "default")]
    namespace: String,
    /// The workload's service account.
    #[arg(long, env = "BOSUN_SERVICE_ACCOUNT", default_value = "default")]
    service_account: String,
    /// Where Envoy's SDS cluster connects (a Unix socket path).
    #[arg(long, env = "BOSUN_SDS_SOCKET", value_name = "PATH")]
    sds_socket: PathBuf,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let link = ControlPlaneLink::new(Some(&args.root_cert), Some(args.token_file.clone()))
        .context("reading the mesh root and the workload token")?;
    let ca = link.endpoint(&args.ca_address).context("the CA address")?;
    let agent = SdsAgent {
        socket: args.sds_socket,
        ca,
        link,
        identity: bosun_ca::Identity::new(args.trust_domain, args.namespace, args.service_account),
        ttl: Duration::from_secs(24 * 60 * 60),
    };
    agent
        .run(bosun::shutdown_signal())
        .await
        .context("running the SDS agent")
}
