//! What `bosun up` will start, worked out from the loaded folder before anything starts:
//! one [`WorkloadPlan`] per LocalWorkload, joined with its WorkloadEntry. Every problem is
//! found here, with its `file:line`, so a folder that cannot run is refused whole.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use bosun_api::networking::WorkloadEntry;
use bosun_api::{Config, LocalWorkload, Origin, ProxyKind, Resource};

/// The sidecar's admin port on the workload's IP (Istio's).
pub const ADMIN_PORT: u16 = 15000;
/// The sidecar's outbound HTTP proxy port on the workload's IP (Istio's).
pub const OUTBOUND_PORT: u16 = 15001;
/// Where a traffic generator serves `/stats` on its workload's IP unless its command says
/// otherwise (Istio's port for merged workload statistics).
pub const STATS_PORT: u16 = 15020;
/// `{bosun}` in a command stands for the running `bosun` binary.
pub const BOSUN_PLACEHOLDER: &str = "{bosun}";
/// The flag (and environment variable) that gives a traffic generator its stats address.
const STATS_LISTEN_FLAG: &str = "--stats-listen";
const STATS_LISTEN_ENV: &str = "BOSUN_STATS_LISTEN";

/// Everything to start for a folder.
#[derive(Debug, Clone, PartialEq)]
pub struct MeshPlan {
    /// Workloads that answer requests come first, then those that only send (a workload
    /// without ports, such as a traffic generator), so traffic starts once services are up.
    pub workloads: Vec<WorkloadPlan>,
}

impl MeshPlan {
    /// A control plane is only needed to configure proxies.
    pub fn needs_control_plane(&self) -> bool {
        self.workloads
            .iter()
            .any(|workload| workload.proxy != ProxyKind::None)
    }
}

/// One LocalWorkload, with what its WorkloadEntry says about it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadPlan {
    /// The LocalWorkload's name.
    pub name: String,
    pub namespace: String,
    /// The WorkloadEntry's name (the workload name in the proxy's identity).
    pub workload_entry: String,
    pub ip: IpAddr,
    pub labels: BTreeMap<String, String>,
    pub service_account: Option<String>,
    pub proxy: ProxyKind,
    /// In the WorkloadEntry's port order (by name).
    pub ports: Vec<PortPlan>,
    /// As written: `{bosun}` not yet replaced.
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Where the workload serves traffic statistics, when it is a traffic generator.
    pub stats_address: Option<SocketAddr>,
    /// Where the LocalWorkload is defined.
    pub origin: Origin,
}

/// A WorkloadEntry port and the app port behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortPlan {
    pub name: String,
    pub port: u16,
    pub app_port: u16,
}

impl WorkloadPlan {
    /// `name` in the default namespace, `namespace/name` elsewhere.
    pub fn display_name(&self) -> String {
        if self.namespace == bosun_api::DEFAULT_NAMESPACE {
            self.name.clone()
        } else {
            format!("{}/{}", self.namespace, self.name)
        }
    }

    /// A name usable in file names.
    pub fn file_stem(&self) -> String {
        if self.namespace == bosun_api::DEFAULT_NAMESPACE {
            self.name.clone()
        } else {
            format!("{}.{}", self.namespace, self.name)
        }
    }

    pub fn admin_address(&self) -> SocketAddr {
        SocketAddr::new(self.ip, ADMIN_PORT)
    }

    pub fn outbound_address(&self) -> SocketAddr {
        SocketAddr::new(self.ip, OUTBOUND_PORT)
    }

    /// The app's environment (on top of `bosun up`'s own), as the local-mesh design says:
    /// its IP, first app port, names, and the sidecar as `HTTP_PROXY` when it has one. The
    /// LocalWorkload's `env` comes last and wins.
    pub fn app_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("BOSUN_WORKLOAD_IP".to_owned(), self.ip.to_string()),
            (
                "BOSUN_WORKLOAD_NAME".to_owned(),
                self.workload_entry.clone(),
            ),
            ("BOSUN_NAMESPACE".to_owned(), self.namespace.clone()),
        ];
        if let Some(port) = self.ports.first() {
            env.push(("BOSUN_APP_PORT".to_owned(), port.app_port.to_string()));
        }
        if self.proxy != ProxyKind::None {
            let proxy = format!("http://{}", self.outbound_address());
            env.push(("HTTP_PROXY".to_owned(), proxy.clone()));
            // curl and others read only the lower-case name for http:// URLs.
            env.push(("http_proxy".to_owned(), proxy));
        }
        if let Some(address) = self.stats_address {
            env.push((STATS_LISTEN_ENV.to_owned(), address.to_string()));
        }
        env.extend(self.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env
    }

    /// Variables of `bosun up`'s own environment the app must not inherit: a proxy setting
    /// of the user's shell would send mesh traffic somewhere else entirely.
    pub fn app_env_removed() -> &'static [&'static str] {
        &[
            "HTTP_PROXY",
            "http_proxy",
            "NO_PROXY",
            "no_proxy",
            STATS_LISTEN_ENV,
        ]
    }

    /// The command with `{bosun}` replaced by `bosun_exe`.
    pub fn command_for(&self, bosun_exe: &str) -> Vec<String> {
        self.command
            .iter()
            .map(|part| part.replace(BOSUN_PLACEHOLDER, bosun_exe))
            .collect()
    }
}

fn is_traffic_generator(command: &[String]) -> bool {
    matches!(command, [bosun, sample, load, ..]
        if bosun == BOSUN_PLACEHOLDER && sample == "sample" && load == "load")
}

/// A reason the folder cannot run, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    pub origin: Origin,
    /// `LocalWorkload default/reviews-v1` or `WorkloadEntry default/reviews-v1`.
    pub resource: String,
    pub message: String,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.resource, self.origin, self.message)
    }
}

/// Every reason the folder cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PlanErrors(pub Vec<PlanError>);

impl fmt::Display for PlanErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// Works out what to start for the loaded resources.
pub fn plan(resources: &[Resource]) -> Result<MeshPlan, PlanErrors> {
    let entries: HashMap<(&str, &str), &Config<WorkloadEntry>> = resources
        .iter()
        .filter_map(|resource| match resource {
            Resource::WorkloadEntry(entry) => Some((
                (entry.meta.namespace.as_str(), entry.meta.name.as_str()),
                entry,
            )),
            _ => None,
        })
        .collect();
    let mut errors = Vec::new();
    let mut workloads = Vec::new();
    for resource in resources {
        if let Resource::LocalWorkload(local) = resource {
            match plan_workload(local, &entries) {
                Ok(workload) => workloads.push(workload),
                Err(mut found) => errors.append(&mut found),
            }
        }
    }
    check_sharing(&workloads, &mut errors);
    if !errors.is_empty() {
        return Err(PlanErrors(errors));
    }
    // Stable: servers first, then clients, each in folder order.
    workloads.sort_by_key(|workload| workload.ports.is_empty());
    Ok(MeshPlan { workloads })
}

fn plan_workload(
    local: &Config<LocalWorkload>,
    entries: &HashMap<(&str, &str), &Config<WorkloadEntry>>,
) -> Result<WorkloadPlan, Vec<PlanError>> {
    let namespace = local.meta.namespace.as_str();
    let local_error = |message: String| PlanError {
        origin: local.origin.clone(),
        resource: format!("LocalWorkload {namespace}/{}", local.meta.name),
        message,
    };
    let spec = &local.spec;
    let mut errors = Vec::new();
    if spec.command.is_empty() {
        errors.push(local_error("`command` is empty: nothing to run".to_owned()));
    }
    let Some(entry) = entries.get(&(namespace, spec.workload_entry.as_str())) else {
        errors.push(local_error(format!(
            "workloadEntry {:?} is not defined in namespace {namespace}",
            spec.workload_entry
        )));
        return Err(errors);
    };
    let entry_error = |message: String| PlanError {
        origin: entry.origin.clone(),
        resource: format!("WorkloadEntry {namespace}/{}", entry.meta.name),
        message,
    };

    let address = entry.spec.address();
    let ip = match address.parse::<IpAddr>() {
        Ok(ip) if ip.is_loopback() => Some(ip),
        Ok(_) => {
            errors.push(entry_error(format!(
                "address {address} is not a loopback address: `bosun up` runs every workload \
                 on this machine, each on its own 127.x.y.z"
            )));
            None
        }
        Err(_) if address.is_empty() => {
            errors.push(entry_error(
                "no `address`: `bosun up` needs an IP such as 127.0.10.1".to_owned(),
            ));
            None
        }
        Err(_) => {
            errors.push(entry_error(format!(
                "address {address:?} is not an IP address; `bosun up` needs one such as 127.0.10.1"
            )));
            None
        }
    };

    let mut ports = Vec::new();
    for (name, number) in &entry.spec.ports {
        let Ok(port) = u16::try_from(*number) else {
            errors.push(entry_error(format!(
                "port {name}: {number} is not a port number"
            )));
            continue;
        };
        // Without a sidecar nothing forwards from the workload port, so the app is reached
        // on it directly unless `appPorts` says otherwise.
        let app_port = if spec.proxy == ProxyKind::None {
            Some(spec.app_ports.get(name).copied().unwrap_or(port))
        } else {
            spec.app_port(name, port)
        };
        match app_port {
            Some(app_port) => ports.push(PortPlan {
                name: name.clone(),
                port,
                app_port,
            }),
            None => errors.push(local_error(format!(
                "port {name} ({port}): the default app port {port} + {} is out of range; \
                 set appPorts.{name}",
                bosun_api::local::APP_PORT_OFFSET
            ))),
        }
    }
    for name in spec.app_ports.keys() {
        if !entry.spec.ports.contains_key(name) {
            errors.push(local_error(format!(
                "appPorts names port {name:?}, which WorkloadEntry {} does not have",
                entry.meta.name
            )));
        }
    }
    if spec.proxy != ProxyKind::None {
        let sidecar_ports: Vec<u16> = ports
            .iter()
            .map(|port| port.port)
            .chain([ADMIN_PORT, OUTBOUND_PORT])
            .collect();
        for port in &ports {
            if sidecar_ports.contains(&port.app_port) {
                errors.push(local_error(format!(
                    "app port {} of port {} is taken by the sidecar on the same IP",
                    port.app_port, port.name
                )));
            }
        }
    }

    let stats_address = match (ip, stats_address(&spec.command, &spec.env)) {
        (_, Ok(Some(address))) => Some(address),
        (Some(ip), Ok(None)) if is_traffic_generator(&spec.command) => {
            Some(SocketAddr::new(ip, STATS_PORT))
        }
        (_, Ok(None)) => None,
        (_, Err(message)) => {
            errors.push(local_error(message));
            None
        }
    };

    match ip {
        Some(ip) if errors.is_empty() => Ok(WorkloadPlan {
            name: local.meta.name.clone(),
            namespace: namespace.to_owned(),
            workload_entry: entry.meta.name.clone(),
            ip,
            labels: entry.spec.labels.clone(),
            service_account: entry.spec.service_account.clone(),
            proxy: spec.proxy,
            ports,
            command: spec.command.clone(),
            env: spec.env.clone(),
            stats_address,
            origin: local.origin.clone(),
        }),
        _ => Err(errors),
    }
}

/// The stats address a command or its env names: `--stats-listen ADDR`,
/// `--stats-listen=ADDR`, or `BOSUN_STATS_LISTEN`.
fn stats_address(
    command: &[String],
    env: &BTreeMap<String, String>,
) -> Result<Option<SocketAddr>, String> {
    let from_command = command.iter().enumerate().find_map(|(index, part)| {
        if part == STATS_LISTEN_FLAG {
            Some(command.get(index + 1).cloned().unwrap_or_default())
        } else {
            part.strip_prefix(STATS_LISTEN_FLAG)
                .and_then(|rest| rest.strip_prefix('='))
                .map(str::to_owned)
        }
    });
    match from_command.or_else(|| env.get(STATS_LISTEN_ENV).cloned()) {
        None => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|_| format!("{STATS_LISTEN_FLAG} {text:?} is not an IP:port address")),
    }
}

/// Two workloads cannot share an IP (their sidecars' ports would clash) nor run the same
/// WorkloadEntry (one IP, one identity).
fn check_sharing(workloads: &[WorkloadPlan], errors: &mut Vec<PlanError>) {
    let mut by_ip: HashMap<IpAddr, &WorkloadPlan> = HashMap::new();
    let mut by_entry: HashMap<(&str, &str), &WorkloadPlan> = HashMap::new();
    for workload in workloads {
        let resource = format!("LocalWorkload {}/{}", workload.namespace, workload.name);
        if let Some(first) = by_entry.insert(
            (
                workload.namespace.as_str(),
                workload.workload_entry.as_str(),
            ),
            workload,
        ) {
            errors.push(PlanError {
                origin: workload.origin.clone(),
                resource,
                message: format!(
                    "WorkloadEntry {} is already run by LocalWorkload {} ({})",
                    workload.workload_entry, first.name, first.origin
                ),
            });
        } else if let Some(first) = by_ip.insert(workload.ip, workload) {
            errors.push(PlanError {
                origin: workload.origin.clone(),
                resource,
                message: format!(
                    "address {} is also the address of LocalWorkload {} ({}); give each \
                     WorkloadEntry its own 127.x.y.z",
                    workload.ip, first.name, first.origin
                ),
            });
        }
    }
}

#[cfg(test)]
mod tests;
