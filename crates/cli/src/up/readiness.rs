//! Waiting for a started process to be ready, with a deadline, failing fast (with the
//! tail of its log) if it exits instead.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::{HeaderMap, Uri};
use tokio::net::TcpStream;

use super::process::ManagedProcess;
use crate::sample::client::HttpClient;

/// How often readiness is checked.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Lines of log shown when a process fails to get ready.
pub const LOG_TAIL_LINES: usize = 20;

/// What "ready" means for a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// `GET http://<address><path>` answers 2xx.
    HttpOk {
        address: SocketAddr,
        path: &'static str,
    },
    /// Each address accepts TCP connections.
    Accepting(Vec<SocketAddr>),
    /// Nothing to check: started is ready.
    Started,
}

impl fmt::Display for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HttpOk { address, path } => write!(f, "GET http://{address}{path} to answer 2xx"),
            Self::Accepting(addresses) => {
                let list: Vec<String> = addresses.iter().map(ToString::to_string).collect();
                write!(f, "{} to accept connections", list.join(", "))
            }
            Self::Started => write!(f, "the process to start"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadinessError {
    #[error("{name} exited ({status}) before it was ready; the end of its log ({log}):\n{tail}")]
    Exited {
        name: String,
        status: std::process::ExitStatus,
        log: String,
        tail: String,
    },
    #[error(
        "{name} was not ready after {waited:?} (waiting for {readiness}); the end of its log ({log}):\n{tail}"
    )]
    Timeout {
        name: String,
        waited: Duration,
        readiness: String,
        log: String,
        tail: String,
    },
}

/// Waits until `process` is ready, it exits, or `timeout` passes.
pub async fn wait_until_ready(
    process: &ManagedProcess,
    readiness: &Readiness,
    timeout: Duration,
) -> Result<Duration, ReadinessError> {
    let started = Instant::now();
    let client = HttpClient::new(None, POLL_INTERVAL.max(Duration::from_millis(500)));
    let poll = async {
        loop {
            if is_ready(&client, readiness).await {
                return;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    };
    tokio::select! {
        () = poll => Ok(started.elapsed()),
        status = process.exited() => Err(ReadinessError::Exited {
            name: process.name().to_owned(),
            status,
            log: process.log_path().display().to_string(),
            tail: process.log_tail(LOG_TAIL_LINES),
        }),
        () = tokio::time::sleep(timeout) => Err(ReadinessError::Timeout {
            name: process.name().to_owned(),
            waited: timeout,
            readiness: readiness.to_string(),
            log: process.log_path().display().to_string(),
            tail: process.log_tail(LOG_TAIL_LINES),
        }),
    }
}

async fn is_ready(client: &HttpClient, readiness: &Readiness) -> bool {
    match readiness {
        Readiness::HttpOk { address, path } => {
            let Ok(url) = format!("http://{address}{path}").parse::<Uri>() else {
                return false;
            };
            client
                .get(&url, HeaderMap::new())
                .await
                .is_ok_and(|response| response.status.is_success())
        }
        Readiness::Accepting(addresses) => {
            for address in addresses {
                if TcpStream::connect(address).await.is_err() {
                    return false;
                }
            }
            true
        }
        Readiness::Started => true,
    }
}
