//! What the `bosun` binary and the lean sidecar binary `bosun-proxy` share: the proxy's
//! flags, logging, signals and the runtime.
//!
//! The sidecar runs beside every workload, so its binary carries only the proxy: code the
//! proxy never runs still costs resident memory through the pages the kernel maps around
//! the code it does run.

pub mod memory;
pub mod proxy_cmd;

use std::num::NonZeroUsize;
use std::time::Duration;

/// Logs to stderr at `default_level`; `RUST_LOG` (e.g. `debug`, `bosun_proxy=trace`)
/// picks what is shown instead.
pub fn init_logging(default_level: &str) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// A runtime with `threads` workers. One thread gets the single-threaded scheduler: no
/// work stealing, no cross-thread wake-ups, the cheapest per request on one core.
pub fn runtime(threads: NonZeroUsize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads.get() == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.get())
            .enable_all()
            .build()
    }
}

/// Completes on Ctrl-C or SIGTERM: the signals every long-running subcommand stops on.
pub async fn shutdown_signal() {
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

/// A duration as flags take it: `5s`, `500ms`, `20m`, `24h`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{s:?}: {e}"))
}
