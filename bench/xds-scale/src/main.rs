//! `xds-scale`: the control plane at scale. Generates a mesh folder (services, each with
//! endpoints), runs a real `bosun control-plane` on it, connects many simulated delta-ADS
//! clients at once, and reports:
//! - full push: from the moment every client subscribes until each is in sync (p50, max);
//! - incremental change: one endpoint of one service moves; time until each client has
//!   the new endpoints (p50, p99, max), measured from the file write;
//! - the control plane's memory (RSS now and peak);
//! - with `--wire-floor`, the floor: the same bytes to as many loopback connections, and
//!   nothing else.

mod client;
mod floor;
mod mesh;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use tokio::sync::watch;

#[derive(Debug, Parser)]
#[command(about = "Control plane at scale: push times and memory with many delta-xDS clients")]
struct Args {
    /// Services in the generated mesh.
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// Endpoints (WorkloadEntries) per service.
    #[arg(long, default_value_t = 10)]
    endpoints: usize,
    /// Simulated proxies, each on its own delta ADS stream and connection.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// The `bosun` binary to run as the control plane.
    #[arg(long, default_value = "target/release/bosun")]
    bosun: PathBuf,
    /// The control plane's debounce, e.g. 10ms (part of the incremental figure).
    #[arg(long, default_value = "10ms")]
    debounce: String,
    /// Print the result as one JSON object only.
    #[arg(long)]
    json: bool,
    /// Write the control plane's log (at info level) to this file.
    #[arg(long)]
    control_plane_log: Option<PathBuf>,
    /// Also time moving the full push's bytes to as many loopback connections with nothing
    /// else done: what the wire alone costs on this machine.
    #[arg(long)]
    wire_floor: bool,
    /// Give every WorkloadEntry a service account, so every cluster carries auto mTLS
    /// (the shape of a mesh of sidecars).
    #[arg(long)]
    mtls: bool,
    /// Scope each client with a Sidecar to this many services (0: no Sidecar, every
    /// client is sent the whole mesh).
    #[arg(long, default_value_t = 0)]
    sidecar_scope: usize,
    /// How many distinct Sidecars share the clients out (each selects its group).
    #[arg(long, default_value_t = 100)]
    sidecar_groups: usize,
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kib| kib.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU seconds `pid` has used so far (user and system).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) end at its closing paren.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |index: usize| fields.get(index).and_then(|v| v.parse::<f64>().ok());
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    let total = ticks(11).unwrap_or(0.0) + ticks(12).unwrap_or(0.0);
    // Linux reports them in USER_HZ, 100 on every architecture it supports.
    total / 100.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 10.0).round() / 10.0
}

fn progress(json: bool, text: &str) {
    if !json {
        eprintln!("{text}");
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = std::env::temp_dir().join(format!("bosun-xds-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    progress(
        args.json,
        &format!(
            "generating {} services x {} endpoints in {}",
            args.services,
            args.endpoints,
            dir.display()
        ),
    );
    mesh::write(&dir, args.services, args.endpoints, args.mtls)?;
    let scoped = args.sidecar_scope > 0;
    if scoped {
        mesh::write_sidecars(&dir, args.services, args.sidecar_scope, args.sidecar_groups)?;
    }
    // Which clients hold service 0, whose endpoint the incremental change moves.
    let sees_change = |index: usize| !scoped || index.is_multiple_of(args.sidecar_groups.max(1));

    let xds_port = free_port()?;
    let debug_port = free_port()?;
    let loading = Instant::now();
    let mut control_plane = Command::new(&args.bosun)
        .arg("control-plane")
        .arg("--config")
        .arg(&dir)
        // The simulated proxies speak plaintext ADS; the TLS port is unused here.
        .arg("--plaintext-xds-address")
        .arg(format!("127.0.0.1:{xds_port}"))
        .arg("--xds-address")
        .arg(format!("127.0.0.1:{}", free_port()?))
        .arg("--identity-dir")
        .arg(format!("{}-identity", dir.display()))
        .arg("--debug-address")
        .arg(format!("127.0.0.1:{debug_port}"))
        .arg("--debounce")
        .arg(&args.debounce)
        .env(
            "RUST_LOG",
            if args.control_plane_log.is_some() {
                "info,bosun_control_plane=debug"
            } else {
                "warn"
            },
        )
        .stdout(Stdio::null())
        .stderr(match &args.control_plane_log {
            Some(path) => Stdio::from(std::fs::File::create(path)?),
            None => Stdio::null(),
        })
        .spawn()
        .with_context(|| {
            format!(
                "starting {} (build it with cargo build --release)",
                args.bosun.display()
            )
        })?;
    let pid = control_plane.id();
    wait_for_port(xds_port, Duration::from_secs(300)).await?;
    let load_time = loading.elapsed();
    let (rss_idle, _) = rss_kib(pid);
    progress(
        args.json,
        &format!(
            "control plane ready in {load_time:?}, RSS {} MiB",
            rss_idle / 1024
        ),
    );

    // Connect everyone first, then subscribe all at once.
    let (start_tx, start_rx) = watch::channel(false);
    let mut clients = Vec::with_capacity(args.clients);
    for index in 0..args.clients {
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{xds_port}"))?
                .connect()
                .await?;
        let (times_tx, times_rx) = watch::channel(client::ClientTimes::default());
        let task = tokio::spawn(client::run(
            channel,
            index,
            start_rx.clone(),
            mesh::changed_cluster(),
            // One outbound cluster per service (one port, no subsets).
            if scoped {
                args.sidecar_scope.min(args.services)
            } else {
                args.services
            },
            scoped.then(|| mesh::group_of(index, args.sidecar_groups)),
            times_tx,
        ));
        clients.push((index, task, times_rx));
    }
    progress(
        args.json,
        &format!("{} clients connected; subscribing", args.clients),
    );
    let started = Instant::now();
    let cpu_before_push = cpu_seconds(pid);
    start_tx.send(true)?;
    let all_synced = wait_all(
        &clients,
        |_, t| t.synced.is_some(),
        Duration::from_secs(600),
    )
    .await;
    if !all_synced {
        bail!("not every client reached sync within 600 s");
    }
    let mut full: Vec<Duration> = clients
        .iter()
        .filter_map(|(_, _, times)| times.borrow().synced.map(|at| at - started))
        .collect();
    full.sort();
    let bytes: usize = clients.iter().map(|(_, _, t)| t.borrow().bytes).sum();
    let (rss_synced, peak_synced) = rss_kib(pid);
    let push_cpu = cpu_seconds(pid) - cpu_before_push;
    progress(
        args.json,
        &format!(
            "full push: every client in sync after {:?} (p50 {:?}); {} MiB sent; RSS {} MiB",
            full.last().copied().unwrap_or_default(),
            percentile(&full, 50.0),
            bytes / (1 << 20),
            rss_synced / 1024
        ),
    );

    // One endpoint of one service moves.
    let changed_at = Instant::now();
    mesh::write_file(&dir, 0, args.services, args.endpoints, 1, args.mtls)?;
    let all_changed = wait_all(
        &clients,
        |index, t| !sees_change(index) || t.changed.is_some(),
        Duration::from_secs(120),
    )
    .await;
    let mut incremental: Vec<Duration> = clients
        .iter()
        .filter_map(|(_, _, times)| times.borrow().changed.map(|at| at - changed_at))
        .collect();
    incremental.sort();
    let (rss_end, peak) = rss_kib(pid);
    let _ = control_plane.kill();
    let _ = control_plane.wait();
    for (_, task, _) in &clients {
        task.abort();
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(format!("{}-identity", dir.display()));

    let wire_floor = if args.wire_floor {
        progress(args.json, "timing the wire alone with the same bytes");
        Some(ms(floor::wire_floor(
            args.clients,
            bytes / args.clients.max(1),
        )
        .await?))
    } else {
        None
    };

    let result = serde_json::json!({
        "services": args.services,
        "endpoints": args.services * args.endpoints,
        "clients": args.clients,
        "sidecar_scope": args.sidecar_scope,
        "sidecar_groups": if scoped { Some(args.sidecar_groups) } else { None },
        "incremental_clients": incremental.len(),
        "debounce": args.debounce,
        "config_load_ms": ms(load_time),
        "full_push_max_ms": ms(full.last().copied().unwrap_or_default()),
        "full_push_p50_ms": ms(percentile(&full, 50.0)),
        "full_push_mib_sent": bytes / (1 << 20),
        "full_push_control_plane_cpu_s": (push_cpu * 10.0).round() / 10.0,
        "wire_floor_ms": wire_floor,
        "incremental_all_clients": all_changed,
        "incremental_p50_ms": ms(percentile(&incremental, 50.0)),
        "incremental_p99_ms": ms(percentile(&incremental, 99.0)),
        "incremental_max_ms": ms(incremental.last().copied().unwrap_or_default()),
        "rss_idle_mib": rss_idle / 1024,
        "rss_synced_mib": rss_synced / 1024,
        "rss_end_mib": rss_end / 1024,
        "rss_peak_mib": peak.max(peak_synced) / 1024,
    });
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}

type Client = (
    usize,
    tokio::task::JoinHandle<anyhow::Result<()>>,
    watch::Receiver<client::ClientTimes>,
);

async fn wait_all(
    clients: &[Client],
    done: impl Fn(usize, &client::ClientTimes) -> bool,
    timeout: Duration,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if clients
            .iter()
            .all(|(index, _, times)| done(*index, &times.borrow()))
        {
            return true;
        }
        if clients.iter().any(|(_, task, _)| task.is_finished()) {
            return false;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn wait_for_port(port: u16, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            bail!("the control plane did not listen on port {port} within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
