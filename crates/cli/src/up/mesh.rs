//! [`LocalMesh`]: starts a folder's mesh as local processes (control plane, a sidecar and an
//! app per LocalWorkload), waiting for each to be ready, and [`RunningMesh`]: watches and
//! stops them. Built to be driven from tests as well as by `bosun up`.

use std::ffi::OsString;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bosun_api::{ProxyKind, Resource, Severity};

use super::credentials::{CredentialsError, MeshCredentials};
use super::envoy::{self, EnvoyError};
use super::events::EventLog;
use super::plan::{self, MeshPlan, PlanErrors, WorkloadPlan};
use super::process::{ManagedProcess, ProcessError, ProcessSpec};
use super::progress::ProgressMode;
use super::readiness::{self, Readiness, ReadinessError};
use super::supervise::{self, Supervised};

/// How to start a local mesh.
#[derive(Debug, Clone)]
pub struct MeshOptions {
    /// The `bosun` binary: runs the control plane and proxies, and replaces `{bosun}`.
    pub bosun_exe: PathBuf,
    /// Where logs and generated files go; `<tmp>/bosun-up-<pid>` by default.
    pub run_dir: Option<PathBuf>,
    /// The control plane's xDS port on 127.0.0.1; 0 picks a free one.
    pub xds_port: u16,
    /// The control plane's debug port on 127.0.0.1; 0 picks a free one.
    pub debug_port: u16,
    /// How long each process may take to be ready.
    pub ready_timeout: Duration,
    /// How long a process has to exit after SIGTERM before it is killed.
    pub stop_grace: Duration,
    pub progress: ProgressMode,
}

impl MeshOptions {
    pub fn new(bosun_exe: impl Into<PathBuf>) -> Self {
        Self {
            bosun_exe: bosun_exe.into(),
            run_dir: None,
            xds_port: 0,
            debug_port: 0,
            ready_timeout: Duration::from_secs(30),
            // More than a proxy's 5 s drain.
            stop_grace: Duration::from_secs(10),
            progress: ProgressMode::Quiet,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    #[error(transparent)]
    LoadDir(#[from] bosun_api::LoadDirError),
    #[error("{folder} does not load:\n{}", .problems.join("\n"))]
    Load {
        folder: String,
        problems: Vec<String>,
    },
    #[error("{folder} cannot run:\n{errors}")]
    Plan {
        folder: String,
        #[source]
        errors: PlanErrors,
    },
    #[error(
        "{0} has no LocalWorkload: nothing to start (see examples/bookinfo for how to run a \
         WorkloadEntry as a local process)"
    )]
    NothingToRun(String),
    #[error("cannot create the run folder {path}: {source}")]
    RunDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot find a free port on 127.0.0.1: {0}")]
    FreePort(std::io::Error),
    #[error(transparent)]
    Envoy(#[from] EnvoyError),
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error(transparent)]
    Spawn(#[from] ProcessError),
    #[error(transparent)]
    NotReady(#[from] ReadinessError),
}

/// Where the control plane listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlPlaneAddresses {
    pub xds: SocketAddr,
    pub debug: SocketAddr,
}

/// Starts local meshes.
pub struct LocalMesh;

impl LocalMesh {
    /// Loads `folder`, checks it can run, and starts everything in order, each step
    /// waiting for readiness: the control plane (when a workload has a proxy), the proxies,
    /// the apps that answer requests, then those that only send (traffic generators).
    /// On failure whatever was started is stopped again.
    pub async fn start(folder: &Path, options: MeshOptions) -> Result<RunningMesh, MeshError> {
        let plan = load_plan(folder, options.progress)?;
        let run_dir = options.run_dir.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!("bosun-up-{}", std::process::id()))
        });
        create_private_dir(&run_dir).map_err(|source| MeshError::RunDir {
            path: run_dir.clone(),
            source,
        })?;
        let credentials = MeshCredentials::in_dir(&run_dir)?;
        options.progress.note(&format!(
            "bosun up {}: {} workloads; logs in {}",
            folder.display(),
            plan.workloads.len(),
            run_dir.display()
        ));
        let mut mesh = RunningMesh {
            run_dir,
            folder: folder.to_path_buf(),
            control_plane: None,
            credentials,
            workloads: plan.workloads.clone(),
            processes: Vec::new(),
            stage_starts: Vec::new(),
            ready_timeout: options.ready_timeout,
            stop_grace: options.stop_grace,
        };
        match mesh.start_processes(&plan, &options).await {
            Ok(()) => Ok(mesh),
            Err(error) => {
                mesh.stop_all().await;
                Err(error)
            }
        }
    }
}

/// Loads the folder and works out what to start; load and validation errors stop here.
fn load_plan(folder: &Path, progress: ProgressMode) -> Result<MeshPlan, MeshError> {
    let loaded = bosun_api::load_dir(folder)?;
    let mut problems: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
    for resource in &loaded.resources {
        if let Resource::Unsupported { .. } = resource {
            progress.note(&format!(
                "note: {} ({}) is not supported yet and is ignored",
                resource.reference(),
                resource.origin()
            ));
            continue;
        }
        for message in bosun_api::validate(resource) {
            match message.severity {
                Severity::Error => problems.push(message.to_string()),
                Severity::Warning => progress.note(&message.to_string()),
            }
        }
    }
    let folder_name = folder.display().to_string();
    if !problems.is_empty() {
        return Err(MeshError::Load {
            folder: folder_name,
            problems,
        });
    }
    let plan = plan::plan(&loaded.resources).map_err(|errors| MeshError::Plan {
        folder: folder_name.clone(),
        errors,
    })?;
    if plan.workloads.is_empty() {
        return Err(MeshError::NothingToRun(folder_name));
    }
    Ok(plan)
}

/// A started mesh. Dropping it kills the processes; [`RunningMesh::shutdown`] stops them
/// gracefully.
#[derive(Debug)]
pub struct RunningMesh {
    run_dir: PathBuf,
    folder: PathBuf,
    control_plane: Option<ControlPlaneAddresses>,
    /// The mesh root and the workloads' tokens, handed to each proxy.
    credentials: MeshCredentials,
    workloads: Vec<WorkloadPlan>,
    /// In start order.
    processes: Vec<Supervised>,
    /// Where each stage of the start (control plane, proxies, apps, client apps) begins
    /// in `processes`: a stage is stopped together, the stages in reverse.
    stage_starts: Vec<usize>,
    ready_timeout: Duration,
    stop_grace: Duration,
}

// Some accessors exist for tests that drive a mesh and are not used by `bosun up` itself.
#[cfg_attr(not(test), allow(dead_code))]
impl RunningMesh {
    /// Where the logs (one per process) and generated files are.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// The control plane's addresses, when one was needed.
    pub fn control_plane(&self) -> Option<ControlPlaneAddresses> {
        self.control_plane
    }

    /// The workloads, in start order.
    pub fn workloads(&self) -> &[WorkloadPlan] {
        &self.workloads
    }

    /// A workload by its LocalWorkload name.
    pub fn workload(&self, name: &str) -> Option<&WorkloadPlan> {
        self.workloads.iter().find(|workload| workload.name == name)
    }

    /// Where the traffic generators serve `GET /stats`.
    pub fn stats_addresses(&self) -> Vec<SocketAddr> {
        self.workloads
            .iter()
            .filter_map(|workload| workload.stats_address)
            .collect()
    }

    /// The processes (their current runs), in start order.
    pub fn processes(&self) -> Vec<&ManagedProcess> {
        self.processes.iter().map(Supervised::process).collect()
    }

    /// The processes with their restart counts, in start order.
    pub fn supervised(&self) -> &[Supervised] {
        &self.processes
    }

    /// Keeps every process running: one that exits is started again (with backoff), and
    /// each step is told to `events`. Runs until dropped; then call
    /// [`RunningMesh::shutdown`].
    pub async fn supervise(&mut self, events: &EventLog) {
        supervise::supervise(&mut self.processes, events, self.ready_timeout).await;
    }

    /// Stops every process, traffic first and the control plane last.
    pub async fn shutdown(mut self) {
        self.stop_all().await;
    }

    async fn stop_all(&mut self) {
        // Client apps, then apps, then proxies, then the control plane: reverse start
        // order, so a sidecar outlives its app and drains what the app left in flight.
        // Within a stage all stop at once: each proxy drains for up to its drain period.
        let mut end = self.processes.len();
        for &start in self.stage_starts.iter().rev() {
            let stage = &self.processes[start..end];
            futures::future::join_all(
                stage
                    .iter()
                    .map(|supervised| supervised.process().stop(self.stop_grace)),
            )
            .await;
            end = start;
        }
        self.processes.clear();
        self.stage_starts.clear();
    }

    /// Processes spawned from now on belong to a new stage.
    fn next_stage(&mut self) {
        self.stage_starts.push(self.processes.len());
    }

    async fn start_processes(
        &mut self,
        plan: &MeshPlan,
        options: &MeshOptions,
    ) -> Result<(), MeshError> {
        let progress = options.progress;
        if plan.needs_control_plane() {
            self.start_control_plane(options).await?;
        }
        let proxied: Vec<&WorkloadPlan> = plan
            .workloads
            .iter()
            .filter(|workload| workload.proxy != ProxyKind::None)
            .collect();
        if !proxied.is_empty() {
            let step = progress.step(format!("starting {} proxies", proxied.len()));
            self.next_stage();
            let xds = self.control_plane.map(|addresses| addresses.xds);
            let mut waits = Vec::new();
            for workload in &proxied {
                if workload.proxy == ProxyKind::Envoy {
                    // Envoy's certificates come from an agent beside it; Envoy retries its
                    // SDS socket until the agent listens.
                    let agent = self.agent_spec(workload, options, xds)?;
                    self.spawn(agent, Readiness::Started)?;
                }
                let (spec, readiness) = self.proxy_spec(workload, options, xds)?;
                waits.push(self.spawn(spec, readiness)?);
            }
            if let Err(error) = self.wait_all(waits, options.ready_timeout).await {
                step.failed("proxies did not get ready");
                return Err(error);
            }
            step.done(&format!(
                "{} proxies ready: {}",
                proxied.len(),
                names(&proxied)
            ));
        }

        let (servers, clients): (Vec<&WorkloadPlan>, Vec<&WorkloadPlan>) = plan
            .workloads
            .iter()
            .partition(|workload| !workload.ports.is_empty());
        for (group, what) in [(servers, "apps"), (clients, "client apps")] {
            if group.is_empty() {
                continue;
            }
            let step = progress.step(format!("starting {} {what}", group.len()));
            self.next_stage();
            let mut waits = Vec::new();
            for workload in &group {
                let (spec, readiness) = self.app_spec(workload, options);
                waits.push(self.spawn(spec, readiness)?);
            }
            if let Err(error) = self.wait_all(waits, options.ready_timeout).await {
                step.failed(&format!("{what} did not get ready"));
                return Err(error);
            }
            step.done(&format!("{} {what} ready: {}", group.len(), names(&group)));
        }
        Ok(())
    }

    async fn start_control_plane(&mut self, options: &MeshOptions) -> Result<(), MeshError> {
        let step = options.progress.step("starting the control plane");
        self.next_stage();
        let [xds_port, debug_port] = free_ports([options.xds_port, options.debug_port])?;
        let addresses = ControlPlaneAddresses {
            xds: SocketAddr::from(([127, 0, 0, 1], xds_port)),
            debug: SocketAddr::from(([127, 0, 0, 1], debug_port)),
        };
        let spec = ProcessSpec::new(
            "control plane",
            &options.bosun_exe,
            self.run_dir.join("control-plane.log"),
        )
        .arg("control-plane")
        .arg("--config")
        .arg(self.folder.as_os_str())
        .arg("--xds-address")
        .arg(addresses.xds.to_string())
        .arg("--debug-address")
        .arg(addresses.debug.to_string())
        .arg("--identity-dir")
        .arg(self.run_dir.as_os_str());
        let readiness = Readiness::HttpOk {
            address: addresses.debug,
            path: "/ready",
        };
        let index = self.spawn(spec, readiness)?;
        let supervised = &self.processes[index];
        match readiness::wait_until_ready(
            supervised.process(),
            supervised.readiness(),
            options.ready_timeout,
        )
        .await
        {
            Ok(_) => {
                step.done(&format!(
                    "control plane ready: xDS {}, debug http://{}",
                    addresses.xds, addresses.debug
                ));
                self.control_plane = Some(addresses);
                Ok(())
            }
            Err(error) => {
                step.failed("the control plane did not get ready");
                Err(error.into())
            }
        }
    }

    fn proxy_spec(
        &self,
        workload: &WorkloadPlan,
        options: &MeshOptions,
        xds: Option<SocketAddr>,
    ) -> Result<(ProcessSpec, Readiness), MeshError> {
        // Only reached when a workload has a proxy, which is when a control plane runs.
        let xds = xds.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], options.xds_port)));
        let log_path = self
            .run_dir
            .join(format!("{}.proxy.log", workload.file_stem()));
        let name = format!("proxy {}", workload.display_name());
        let (token, token_file) = self.credentials.token_for(workload)?;
        let spec = match workload.proxy {
            ProxyKind::Envoy => {
                let envoy = envoy::find_envoy(&workload.display_name())?;
                let mut spec = ProcessSpec::new(name, envoy, log_path);
                let sources = bosun_xds::EnvoySources {
                    xds,
                    xds_security: Some(bosun_xds::XdsSecurity {
                        root_cert: self.credentials.root_cert(),
                        token,
                    }),
                    sds_socket: Some(self.credentials.sds_socket(workload)),
                };
                spec.args = envoy::envoy_args(workload, &sources, &self.run_dir)?;
                spec
            }
            ProxyKind::Bosun | ProxyKind::None => {
                let (program, mut args) = sidecar_command(&options.bosun_exe);
                let mut spec = ProcessSpec::new(name, program, log_path);
                args.extend(bosun_proxy_args(workload, xds));
                args.extend([
                    "--root-cert".into(),
                    self.credentials.root_cert().into_os_string(),
                    "--token-file".into(),
                    token_file.into_os_string(),
                ]);
                spec.args = args;
                spec
            }
        };
        let readiness = Readiness::HttpOk {
            address: workload.admin_address(),
            path: "/ready",
        };
        Ok((spec, readiness))
    }

    /// `bosun agent` beside a workload's Envoy: its key, its certificate, SDS.
    fn agent_spec(
        &self,
        workload: &WorkloadPlan,
        options: &MeshOptions,
        xds: Option<SocketAddr>,
    ) -> Result<ProcessSpec, MeshError> {
        let xds = xds.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], options.xds_port)));
        let (_token, token_file) = self.credentials.token_for(workload)?;
        let spec = ProcessSpec::new(
            format!("agent {}", workload.display_name()),
            &options.bosun_exe,
            self.run_dir
                .join(format!("{}.agent.log", workload.file_stem())),
        )
        .arg("agent")
        .arg("--ca-address")
        .arg(format!("https://{xds}"))
        .arg("--root-cert")
        .arg(self.credentials.root_cert().into_os_string())
        .arg("--token-file")
        .arg(token_file.into_os_string())
        .arg("--namespace")
        .arg(&workload.namespace)
        .arg("--service-account")
        .arg(workload.service_account.as_deref().unwrap_or("default"))
        .arg("--sds-socket")
        .arg(self.credentials.sds_socket(workload).into_os_string());
        Ok(spec)
    }

    fn app_spec(&self, workload: &WorkloadPlan, options: &MeshOptions) -> (ProcessSpec, Readiness) {
        let command = workload.command_for(&options.bosun_exe.to_string_lossy());
        let mut parts = command.into_iter();
        // The plan refuses empty commands.
        let program = parts.next().unwrap_or_default();
        let mut spec = ProcessSpec::new(
            format!("app {}", workload.display_name()),
            program,
            self.run_dir
                .join(format!("{}.app.log", workload.file_stem())),
        );
        spec.args = parts.map(OsString::from).collect();
        spec.env = workload
            .app_env()
            .into_iter()
            .map(|(name, value)| (name.into(), value.into()))
            .collect();
        spec.env_remove = WorkloadPlan::app_env_removed()
            .iter()
            .map(OsString::from)
            .collect();
        // Relative paths in a command are relative to the folder, like the YAML beside it.
        spec.current_dir = Some(self.folder.clone());
        let mut addresses: Vec<SocketAddr> = workload
            .ports
            .iter()
            .map(|port| SocketAddr::new(workload.ip, port.app_port))
            .collect();
        addresses.extend(workload.stats_address);
        let readiness = if addresses.is_empty() {
            Readiness::Started
        } else {
            Readiness::Accepting(addresses)
        };
        (spec, readiness)
    }

    fn spawn(&mut self, spec: ProcessSpec, readiness: Readiness) -> Result<usize, MeshError> {
        self.processes.push(Supervised::spawn(spec, readiness)?);
        Ok(self.processes.len() - 1)
    }

    async fn wait_all(&self, waits: Vec<usize>, timeout: Duration) -> Result<(), MeshError> {
        let checks = waits.iter().map(|index| {
            let supervised = &self.processes[*index];
            readiness::wait_until_ready(supervised.process(), supervised.readiness(), timeout)
        });
        futures::future::try_join_all(checks).await?;
        Ok(())
    }
}

/// The lean sidecar binary `bosun-proxy` when it was built beside `bosun` (`cargo build`
/// builds both; `cargo run` only the one it runs), else `bosun proxy`: the same proxy.
fn sidecar_command(bosun_exe: &Path) -> (PathBuf, Vec<OsString>) {
    let lean = bosun_exe.with_file_name(format!("bosun-proxy{}", std::env::consts::EXE_SUFFIX));
    if lean.is_file() {
        (lean, Vec::new())
    } else {
        (bosun_exe.to_path_buf(), vec!["proxy".into()])
    }
}

/// The proxy's flags for a workload's sidecar.
fn bosun_proxy_args(workload: &WorkloadPlan, xds: SocketAddr) -> Vec<OsString> {
    let mut args: Vec<String> = vec![
        // Many sidecars share this machine: one thread each, like `--concurrency 1` for
        // the Envoy sidecars.
        "--concurrency".into(),
        "1".into(),
        "--xds-address".into(),
        format!("https://{xds}"),
        "--workload".into(),
        workload.workload_entry.clone(),
        "--namespace".into(),
        workload.namespace.clone(),
        "--ip".into(),
        workload.ip.to_string(),
        "--admin-port".into(),
        plan::ADMIN_PORT.to_string(),
    ];
    for (key, value) in &workload.labels {
        args.push("--label".into());
        args.push(format!("{key}={value}"));
    }
    if let Some(account) = &workload.service_account {
        args.push("--service-account".into());
        args.push(account.clone());
    }
    for port in &workload.ports {
        args.push("--app-port".into());
        args.push(format!("{}={}", port.port, port.app_port));
    }
    args.into_iter().map(OsString::from).collect()
}

fn names(workloads: &[&WorkloadPlan]) -> String {
    workloads
        .iter()
        .map(|workload| workload.display_name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The run folder, readable by this user only: it holds the workloads' tokens.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// The ports asked for, with each 0 replaced by a port that was free a moment ago (all
/// held at once so they differ).
fn free_ports<const N: usize>(wanted: [u16; N]) -> Result<[u16; N], MeshError> {
    let mut held = Vec::new();
    let mut ports = wanted;
    for port in ports.iter_mut().filter(|port| **port == 0) {
        let listener = TcpListener::bind(("127.0.0.1", 0)).map_err(MeshError::FreePort)?;
        *port = listener.local_addr().map_err(MeshError::FreePort)?.port();
        held.push(listener);
    }
    Ok(ports)
}

#[cfg(test)]
mod tests;
