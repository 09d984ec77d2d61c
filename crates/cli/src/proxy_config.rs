//! `bosun proxy-config`: show the listeners, routes, clusters and endpoints a proxy
//! runs with, read from its admin API's `/config_dump`.

mod envoy;
mod table;
mod yaml;

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, bail};
use bosun_proxy::config_dump::ConfigDump;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Show what one proxy is running with.
///
/// Reads `/config_dump` from the proxy's admin API: give `--admin <ip:port>`, or
/// `--ip <workload ip>` for the default admin port 15000. Works with Bosun's proxy;
/// against a real Envoy admin it lists listeners, routes and clusters by name.
///
/// Example: bosun proxy-config routes --ip 127.0.10.1
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to show.
    #[arg(value_enum)]
    pub what: What,
    /// The proxy's admin address, `<ip>:<port>`.
    #[arg(long, conflicts_with = "ip")]
    pub admin: Option<SocketAddr>,
    /// The workload IP; the admin API is then `<ip>:15000`.
    #[arg(long)]
    pub ip: Option<IpAddr>,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum What {
    Listeners,
    Routes,
    Clusters,
    Endpoints,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
    Yaml,
}

const DEFAULT_ADMIN_PORT: u16 = 15000;

pub async fn run(args: Args) -> anyhow::Result<()> {
    let admin = match (args.admin, args.ip) {
        (Some(admin), _) => admin,
        (None, Some(ip)) => SocketAddr::new(ip, DEFAULT_ADMIN_PORT),
        (None, None) => {
            bail!("give the proxy's admin address with --admin <ip:port> or --ip <workload ip>")
        }
    };
    let dump = fetch(admin).await?;
    print!("{}", render(&dump, args.what, args.output)?);
    Ok(())
}

async fn fetch(admin: SocketAddr) -> anyhow::Result<ConfigDump> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri = format!("http://{admin}/config_dump").parse()?;
    let resp = client
        .get(uri)
        .await
        .with_context(|| format!("cannot reach the proxy admin API at {admin}"))?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!("{admin}/config_dump answered {status}");
    }
    let value: serde_json::Value =
        serde_json::from_slice(&body).context("config dump is not JSON")?;
    if value.get("configs").is_some() {
        return Ok(envoy::from_envoy(&value));
    }
    serde_json::from_value(value).context("unexpected config dump format")
}

fn render(dump: &ConfigDump, what: What, output: Output) -> anyhow::Result<String> {
    let selected = select(dump, what)?;
    Ok(match output {
        Output::Json => format!("{}\n", serde_json::to_string_pretty(&selected)?),
        Output::Yaml => yaml::to_string(&selected),
        Output::Table => table::render(dump, what),
    })
}

fn select(dump: &ConfigDump, what: What) -> anyhow::Result<serde_json::Value> {
    Ok(match what {
        What::Listeners => serde_json::to_value(&dump.listeners)?,
        What::Routes => serde_json::to_value(&dump.routes)?,
        What::Clusters => serde_json::to_value(&dump.clusters)?,
        What::Endpoints => serde_json::to_value(&dump.endpoints)?,
        What::All => serde_json::to_value(dump)?,
    })
}
