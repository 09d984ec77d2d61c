//! `bosun proxy`: run the sidecar for one workload, configured over xDS.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::time::Duration;

use anyhow::{Context, bail};
use bosun_proxy::{ConnectionLimits, NodeIdentity, Proxy, ProxyConfig, XdsMode};

/// Run Bosun's sidecar proxy for one workload.
///
/// The proxy connects to the control plane over ADS (Envoy xDS v3), presents itself
/// as the workload (Istio's node id and metadata), and serves the listeners it is
/// given: typically `<ip>:15001` for outbound traffic (use it as HTTP_PROXY) and one
/// inbound listener per workload port. The admin API (`/ready`, `/config_dump`,
/// `/stats`) listens on `<ip>:<admin-port>`.
///
/// The control plane is reached over TLS and checked against the mesh root (--root-cert);
/// the workload's token (--token-file) proves which workload the proxy runs for, and the
/// CA signs a certificate for that identity only. `bosun up` hands both over.
///
/// Example: bosun proxy --workload reviews-v1 --ip 127.0.10.1 --label app=reviews
///          --label version=v1 --app-port 9080=19080 --service-account bookinfo-reviews
///          --root-cert /tmp/bosun-up-1/root-cert.pem
///          --token-file /tmp/bosun-up-1/reviews-v1.token
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The control plane's ADS address: https:// for TLS (Istio's 15012), http:// for
    /// plaintext xDS where the control plane serves it (--plaintext-xds-address).
    #[arg(
        long,
        env = "BOSUN_XDS_ADDRESS",
        default_value = "https://127.0.0.1:15012"
    )]
    pub xds_address: String,
    /// The mesh root (PEM), handed out of band: the control plane and every peer are
    /// verified against it (Istio's istio-ca-root-cert).
    #[arg(long, env = "BOSUN_ROOT_CERT", value_name = "FILE")]
    pub root_cert: Option<std::path::PathBuf>,
    /// The workload's token: proves to the control plane who the proxy runs for.
    #[arg(long, env = "BOSUN_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<std::path::PathBuf>,
    /// Where to get the workload certificate signed (Istio's certificate service);
    /// the control plane's address when not given.
    #[arg(long, env = "BOSUN_CA_ADDRESS")]
    pub ca_address: Option<String>,
    /// Trust domain of the workload's SPIFFE identity.
    #[arg(long, env = "BOSUN_TRUST_DOMAIN", default_value = "cluster.local")]
    pub trust_domain: String,
    /// The WorkloadEntry this proxy runs for.
    #[arg(long, env = "BOSUN_WORKLOAD_NAME")]
    pub workload: String,
    /// The workload's namespace.
    #[arg(long, env = "BOSUN_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// The workload's IP (a loopback address per workload on one machine).
    #[arg(long, env = "BOSUN_WORKLOAD_IP", default_value = "127.0.0.1")]
    pub ip: IpAddr,
    /// A workload label, `key=value`; repeat for several (env: comma-separated).
    #[arg(long = "label", env = "BOSUN_LABELS", value_delimiter = ',', value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// The workload's service account.
    #[arg(long, env = "BOSUN_SERVICE_ACCOUNT", default_value = "default")]
    pub service_account: String,
    /// The outbound listener's port, told to the control plane.
    #[arg(long, env = "BOSUN_OUTBOUND_PORT", default_value_t = 15001)]
    pub outbound_port: u16,
    /// `<workload port>=<app port>`: where inbound traffic for a port goes; repeatable.
    #[arg(long = "app-port", env = "BOSUN_APP_PORTS", value_delimiter = ',', value_parser = parse_app_port)]
    pub app_ports: Vec<(u16, u16)>,
    /// The admin API's port on the workload IP (0 picks a free one).
    #[arg(long, env = "BOSUN_ADMIN_PORT", default_value_t = 15000)]
    pub admin_port: u16,
    /// ADS variant: `delta` (incremental) or `sotw` (state of the world).
    #[arg(long, env = "BOSUN_XDS_MODE", default_value = "delta")]
    pub xds_mode: XdsMode,
    /// Worker threads serving traffic, like Envoy's `--concurrency`. With 1 the whole
    /// proxy runs on one thread: the least CPU and memory per request.
    #[arg(long, env = "BOSUN_CONCURRENCY", default_value = "2")]
    pub concurrency: NonZeroUsize,
    /// How long the proxy drains on shutdown (Istio's terminationDrainDuration): its
    /// listeners keep accepting, HTTP/1.1 answers carry `Connection: close` and HTTP/2
    /// connections get GOAWAY; it ends sooner once no request arrives for 1 s. In-flight
    /// requests must finish by then. `5s`, `500ms`, or seconds.
    #[arg(long, env = "BOSUN_DRAIN_TIMEOUT", default_value = "5s", value_parser = crate::parse_duration)]
    pub drain_timeout: Duration,
    /// How long the workload certificate lives (Istio's SECRET_TTL); it is renewed at
    /// half its life. The CA caps it at 24h.
    #[arg(long, env = "BOSUN_CERTIFICATE_TTL", default_value = "24h", value_parser = crate::parse_duration)]
    pub certificate_ttl: Duration,
    /// The most downstream connections the proxy keeps open over all its listeners
    /// (Istio's ProxyConfig connectionSettings.globalDownstreamConnectionLimit, Envoy's
    /// global_downstream_max_connections); one more is closed as soon as it arrives.
    /// Unlimited when not given.
    #[arg(
        long,
        env = "BOSUN_GLOBAL_DOWNSTREAM_MAX_CONNECTIONS",
        value_name = "N"
    )]
    pub global_downstream_max_connections: Option<u64>,
    /// `<listener>=<N>`: the most connections one listener keeps open (Envoy's runtime
    /// key envoy.resource_limits.listener.<listener>.connection_limit); repeatable.
    /// Example: --listener-connection-limit virtualOutbound=5000
    #[arg(long = "listener-connection-limit", env = "BOSUN_LISTENER_CONNECTION_LIMITS", value_delimiter = ',', value_parser = parse_listener_limit)]
    pub listener_connection_limits: Vec<(String, u64)>,
}

fn parse_listener_limit(s: &str) -> Result<(String, u64), String> {
    let (name, limit) = s
        .split_once('=')
        .filter(|(name, _)| !name.is_empty())
        .ok_or_else(|| format!("listener limit {s:?} must be <listener>=<connections>"))?;
    let limit = limit
        .trim()
        .parse()
        .map_err(|_| format!("{limit:?} is not a number of connections"))?;
    Ok((name.to_owned(), limit))
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("label {s:?} must be key=value")),
    }
}

fn parse_app_port(s: &str) -> Result<(u16, u16), String> {
    let (port, app) = s
        .split_once('=')
        .ok_or_else(|| format!("app port {s:?} must be <workload port>=<app port>"))?;
    let parse = |p: &str| {
        p.trim()
            .parse::<u16>()
            .map_err(|_| format!("{p:?} is not a port"))
    };
    Ok((parse(port)?, parse(app)?))
}

impl Args {
    fn config(self) -> anyhow::Result<ProxyConfig> {
        if self.workload.is_empty() {
            bail!("--workload must not be empty");
        }
        Ok(ProxyConfig {
            xds_address: self.xds_address,
            root_cert: self.root_cert,
            token_file: self.token_file,
            ca_address: self.ca_address,
            trust_domain: self.trust_domain,
            xds_mode: self.xds_mode,
            admin_address: SocketAddr::new(self.ip, self.admin_port),
            drain_timeout: self.drain_timeout,
            certificate_ttl: self.certificate_ttl,
            node: NodeIdentity {
                workload: self.workload,
                namespace: self.namespace,
                ip: self.ip,
                labels: self.labels.into_iter().collect(),
                service_account: self.service_account,
                outbound_port: self.outbound_port,
                app_ports: self.app_ports.into_iter().collect::<BTreeMap<_, _>>(),
            },
            connection_limits: ConnectionLimits {
                global: self.global_downstream_max_connections,
                per_listener: self.listener_connection_limits.into_iter().collect(),
            },
            ..Default::default()
        })
    }
}

/// Runs the proxy on a runtime of `--concurrency` threads until Ctrl-C or SIGTERM.
pub fn main(args: Args) -> anyhow::Result<()> {
    let runtime = crate::runtime(args.concurrency).context("starting the runtime")?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let concurrency = args.concurrency;
    let config = args.config()?;
    tracing::info!(
        node = %config.node.node_id(),
        xds = %config.xds_address,
        mode = ?config.xds_mode,
        admin = %config.admin_address,
        drain_timeout = ?config.drain_timeout,
        concurrency,
        "starting proxy"
    );
    let proxy = Proxy::bind(config).await.context("starting the proxy")?;
    tokio::spawn(crate::memory::release_periodically(
        crate::memory::RELEASE_PERIOD,
    ));
    proxy
        .run(crate::shutdown_signal())
        .await
        .context("running the proxy")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_units_and_plain_seconds() {
        use crate::parse_duration;
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(24 * 3600)));
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn labels_and_app_ports_parse() {
        assert_eq!(
            parse_label("app=reviews"),
            Ok(("app".into(), "reviews".into()))
        );
        assert!(parse_label("=x").is_err());
        assert_eq!(parse_app_port("9080=19080"), Ok((9080, 19080)));
        assert!(parse_app_port("9080").is_err());
    }
}
