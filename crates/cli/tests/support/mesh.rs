//! A reviews-shaped test mesh: a client sidecar, reviews v1 and v2 behind their
//! sidecars, and the control plane serving a folder the test can edit.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use super::{Process, ProxyClient, Subnet, bosun, envoy_binary, get, istio_file};

pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Which proxy runs as the client's sidecar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientProxy {
    Bosun,
    /// A real Envoy speaking state-of-the-world or delta ADS.
    Envoy(bosun_xds::StreamKind),
}

/// What a test mesh runs: its config files, the client's sidecar, and how each reviews
/// version behaves.
#[derive(Debug, Clone)]
pub struct MeshSpec {
    /// Files of Istio's bookinfo samples to copy into the folder.
    pub istio_files: Vec<String>,
    /// Files written into the folder: `(name, YAML)`.
    pub files: Vec<(String, String)>,
    pub client: ClientProxy,
    pub backend_proxy: ClientProxy,
    /// How each reviews version serves; a version not listed serves plainly.
    pub backends: Vec<(String, Backend)>,
    /// Flags for `bosun control-plane` beyond the addresses.
    pub control_plane_args: Vec<String>,
    /// The client sidecar's caps on downstream connections.
    pub client_limits: bosun_proxy::ConnectionLimits,
}

impl Default for MeshSpec {
    fn default() -> Self {
        MeshSpec {
            istio_files: vec!["destination-rule-all.yaml".to_string()],
            files: Vec::new(),
            client: ClientProxy::Bosun,
            backend_proxy: ClientProxy::Bosun,
            backends: Vec::new(),
            control_plane_args: Vec::new(),
            client_limits: Default::default(),
        }
    }
}

impl MeshSpec {
    fn backend(&self, version: &str) -> Backend {
        self.backends
            .iter()
            .find(|(v, _)| v == version)
            .map(|(_, backend)| backend.clone())
            .unwrap_or_default()
    }
}

/// One reviews workload: the sample server's extra flags, or not running at all (its
/// WorkloadEntry stays: an endpoint where nothing answers).
#[derive(Debug, Clone, Default)]
pub struct Backend {
    pub serve_args: Vec<String>,
    pub down: bool,
}

pub struct TestMesh {
    pub subnet: Subnet,
    pub dir: tempfile::TempDir,
    pub logs: tempfile::TempDir,
    pub control_plane: Option<Process>,
    pub processes: Vec<Process>,
    control_plane_args: Vec<String>,
    client_limits: bosun_proxy::ConnectionLimits,
}

const VERSIONS: [(&str, u8); 2] = [("v1", 3), ("v2", 4)];
const CLIENT_HOST: u8 = 1;
/// A second client sidecar, for tests that compare two proxies in one mesh.
const OTHER_CLIENT_HOST: u8 = 5;
const CONTROL_PLANE_HOST: u8 = 250;
/// The reviews workloads' TCP port (a TCP echo behind it, at the app port 19000); no
/// service names it unless a test adds one.
pub const TCP_PORT: u16 = 9000;

impl TestMesh {
    /// Writes the mesh folder with Istio's reviews DestinationRule and the given
    /// VirtualService file (from Istio's bookinfo samples), then starts everything.
    /// Returns `None` when an Envoy client is asked for and no Envoy is installed.
    pub async fn start(virtual_service: &str, client_proxy: ClientProxy) -> Option<Self> {
        Self::start_with_backends(virtual_service, client_proxy, ClientProxy::Bosun).await
    }

    /// As [`TestMesh::start`], with `backend_proxy` as the reviews workloads' sidecars.
    pub async fn start_with_backends(
        virtual_service: &str,
        client_proxy: ClientProxy,
        backend_proxy: ClientProxy,
    ) -> Option<Self> {
        let spec = MeshSpec {
            istio_files: vec![
                "destination-rule-all.yaml".to_string(),
                virtual_service.to_string(),
            ],
            client: client_proxy,
            backend_proxy,
            ..MeshSpec::default()
        };
        Self::start_spec(spec).await
    }

    /// Starts the mesh `spec` describes.
    pub async fn start_spec(spec: MeshSpec) -> Option<Self> {
        let backend_envoy = match spec.backend_proxy {
            ClientProxy::Envoy(api) => Some((envoy_binary()?, api)),
            ClientProxy::Bosun => None,
        };
        let envoy = match spec.client {
            ClientProxy::Envoy(api) => Some((envoy_binary()?, api)),
            ClientProxy::Bosun => None,
        };
        let subnet = Subnet::allocate();
        let dir = tempfile::tempdir().expect("config dir");
        let logs = tempfile::tempdir().expect("log dir");
        std::fs::write(dir.path().join("services.yaml"), services_yaml(&subnet)).expect("write");
        for name in &spec.istio_files {
            copy_istio_file(name, dir.path());
        }
        for (name, text) in &spec.files {
            std::fs::write(dir.path().join(name), text).expect("write");
        }

        let mut mesh = Self {
            subnet,
            dir,
            logs,
            control_plane: None,
            processes: Vec::new(),
            control_plane_args: spec.control_plane_args.clone(),
            client_limits: spec.client_limits.clone(),
        };
        mesh.start_control_plane().await;
        for (version, host) in VERSIONS {
            let backend = spec.backend(version);
            if backend.down {
                continue;
            }
            mesh.start_backend(version, host, &backend.serve_args, backend_envoy.as_ref())
                .await;
        }
        match envoy {
            Some((envoy, api)) => mesh.start_envoy_client(CLIENT_HOST, &envoy, api).await,
            None => mesh.start_bosun_client(CLIENT_HOST).await,
        }
        Some(mesh)
    }

    pub fn xds_address(&self) -> SocketAddr {
        SocketAddr::new(self.subnet.ip(CONTROL_PLANE_HOST), 15012)
    }

    pub fn debug_address(&self) -> SocketAddr {
        SocketAddr::new(self.subnet.ip(CONTROL_PLANE_HOST), 15014)
    }

    pub fn client_outbound(&self) -> SocketAddr {
        SocketAddr::new(self.subnet.ip(CLIENT_HOST), 15001)
    }

    /// The inbound port of the sidecar beside reviews `version`.
    pub fn reviews_inbound(&self, version: &str) -> SocketAddr {
        let (_, host) = VERSIONS
            .iter()
            .find(|(v, _)| *v == version)
            .expect("a version of the test mesh");
        SocketAddr::new(self.subnet.ip(*host), 9080)
    }

    pub fn client_admin(&self) -> SocketAddr {
        SocketAddr::new(self.subnet.ip(CLIENT_HOST), 15000)
    }

    pub async fn client(&self) -> ProxyClient {
        ProxyClient::connect(self.client_outbound())
            .await
            .expect("connect to the client sidecar")
    }

    /// Replaces a file of the mesh folder the way an editor saves: write aside, rename.
    pub fn write_config(&self, name: &str, text: &str) {
        let aside = self.logs.path().join(format!(".{name}.tmp"));
        std::fs::write(&aside, text).expect("write");
        std::fs::rename(&aside, self.dir.path().join(name))
            .or_else(|_| std::fs::write(self.dir.path().join(name), text))
            .expect("replace");
    }

    pub async fn start_control_plane(&mut self) {
        let process = start_control_plane_with(
            self.dir.path(),
            self.xds_address(),
            self.debug_address(),
            self.logs.path(),
            &self.control_plane_args,
        )
        .await;
        self.control_plane = Some(process);
    }

    pub fn stop_control_plane(&mut self) {
        if let Some(mut process) = self.control_plane.take() {
            process.kill();
        }
    }

    fn proxy_command(
        &self,
        workload: &str,
        service_account: &str,
        ip: IpAddr,
        labels: &[(&str, &str)],
    ) -> std::process::Command {
        let identity = Credentials {
            xds: self.xds_address(),
            dir: self.logs.path(),
        };
        proxy_command(&identity, workload, "default", service_account, ip, labels)
    }

    async fn start_backend(
        &mut self,
        version: &str,
        host: u8,
        serve_args: &[String],
        envoy: Option<&(std::path::PathBuf, bosun_xds::StreamKind)>,
    ) {
        let ip = self.subnet.ip(host);
        let mut app = bosun();
        app.args([
            "sample",
            "serve",
            "--service",
            "reviews",
            "--version",
            version,
        ])
        .arg("--listen")
        .arg(format!("{ip}:19080"))
        .arg("--tcp-port")
        .arg((TCP_PORT + 10000).to_string())
        .args(serve_args);
        let app = Process::spawn(&format!("reviews-{version}-app"), app, self.logs.path());
        if let Some((envoy, api)) = envoy {
            let mut node =
                bosun_xds::ProxyNode::sidecar(ip, &format!("reviews-{version}"), "default");
            node.labels.insert("app".to_string(), "reviews".to_string());
            node.labels
                .insert("version".to_string(), version.to_string());
            node.app_ports.insert(9080, 19080);
            node.service_account = "bookinfo-reviews".to_string();
            let proxy = self.spawn_envoy(&format!("reviews-{version}-envoy"), envoy, *api, &node);
            wait_ready(&proxy, SocketAddr::new(ip, 15000), "/ready").await;
            wait_ready(&app, SocketAddr::new(ip, 19080), "/healthz").await;
            self.processes.push(app);
            self.processes.push(proxy);
            return;
        }
        // The identity clients expect: the WorkloadEntries' serviceAccount.
        let mut proxy = self.proxy_command(
            &format!("reviews-{version}"),
            "bookinfo-reviews",
            ip,
            &[("app", "reviews"), ("version", version)],
        );
        proxy.args(["--app-port", "9080=19080"]);
        let proxy = Process::spawn(&format!("reviews-{version}-proxy"), proxy, self.logs.path());
        wait_ready(&proxy, SocketAddr::new(ip, 15000), "/ready").await;
        wait_ready(&app, SocketAddr::new(ip, 19080), "/healthz").await;
        self.processes.push(app);
        self.processes.push(proxy);
    }

    /// Starts a sample app outside the mesh (no sidecar, no WorkloadEntry) on
    /// 127.0.0.1, the address `localhost` names everywhere; returns its port.
    pub async fn start_outside_app(&mut self, service: &str, version: &str) -> u16 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let mut app = bosun();
        app.args([
            "sample",
            "serve",
            "--service",
            service,
            "--version",
            version,
        ])
        .arg("--listen")
        .arg(address.to_string());
        let app = Process::spawn(
            &format!("{service}-{version}-outside"),
            app,
            self.logs.path(),
        );
        wait_ready(&app, address, "/healthz").await;
        self.processes.push(app);
        port
    }

    /// Starts a second client sidecar beside the first, of the other kind or the same,
    /// and connects to it; `None` when it is an Envoy and none is installed.
    pub async fn start_other_client(&mut self, proxy: ClientProxy) -> Option<ProxyClient> {
        match proxy {
            ClientProxy::Envoy(api) => {
                let envoy = envoy_binary()?;
                self.start_envoy_client(OTHER_CLIENT_HOST, &envoy, api)
                    .await;
            }
            ClientProxy::Bosun => self.start_bosun_client(OTHER_CLIENT_HOST).await,
        }
        let outbound = SocketAddr::new(self.subnet.ip(OTHER_CLIENT_HOST), 15001);
        Some(
            ProxyClient::connect(outbound)
                .await
                .expect("connect to the other client sidecar"),
        )
    }

    fn client_name(host: u8) -> String {
        if host == CLIENT_HOST {
            "client".to_string()
        } else {
            format!("client-{host}")
        }
    }

    async fn start_bosun_client(&mut self, host: u8) {
        let ip = self.subnet.ip(host);
        let name = Self::client_name(host);
        let mut proxy = self.proxy_command(&name, "default", ip, &[("app", "client")]);
        if let Some(cap) = self.client_limits.global {
            proxy.arg(format!("--global-downstream-max-connections={cap}"));
        }
        for (listener, cap) in &self.client_limits.per_listener {
            proxy.arg(format!("--listener-connection-limit={listener}={cap}"));
        }
        let proxy = Process::spawn(&format!("{name}-proxy"), proxy, self.logs.path());
        wait_ready(&proxy, SocketAddr::new(ip, 15000), "/ready").await;
        self.processes.push(proxy);
    }

    async fn start_envoy_client(&mut self, host: u8, envoy: &Path, api: bosun_xds::StreamKind) {
        let ip = self.subnet.ip(host);
        let name = Self::client_name(host);
        let mut node = bosun_xds::ProxyNode::sidecar(ip, &name, "default");
        node.labels.insert("app".to_string(), "client".to_string());
        let proxy = spawn_envoy_with(
            &format!("{name}-envoy"),
            envoy,
            api,
            &node,
            &Credentials {
                xds: self.xds_address(),
                dir: self.logs.path(),
            },
            &self.client_limits,
        );
        wait_ready(&proxy, SocketAddr::new(ip, 15000), "/ready").await;
        self.processes.push(proxy);
    }

    /// A real Envoy as `node`'s sidecar, its admin on the node's IP at port 15000.
    fn spawn_envoy(
        &self,
        name: &str,
        envoy: &Path,
        api: bosun_xds::StreamKind,
        node: &bosun_xds::ProxyNode,
    ) -> Process {
        let identity = Credentials {
            xds: self.xds_address(),
            dir: self.logs.path(),
        };
        spawn_envoy(name, envoy, api, node, &identity)
    }

    /// The process named `name` (`client-proxy`, `reviews-v1-envoy`, ...).
    pub fn process(&mut self, name: &str) -> &mut Process {
        self.processes
            .iter_mut()
            .find(|process| process.name == name)
            .unwrap_or_else(|| panic!("no process {name} in the test mesh"))
    }

    /// Every log, for a failing test's message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for process in self.control_plane.iter().chain(self.processes.iter()) {
            out.push_str(&format!(
                "--- {} ---\n{}\n",
                process.name,
                process.log_tail()
            ));
        }
        out
    }
}

/// `bosun control-plane` serving the folder `config`, once it is ready; its identity
/// folder (the mesh root, the token key, its CA) is `logs`.
pub async fn start_control_plane(
    config: &Path,
    xds: SocketAddr,
    debug: SocketAddr,
    logs: &Path,
) -> Process {
    start_control_plane_with(config, xds, debug, logs, &[]).await
}

/// As [`start_control_plane`], with `extra` flags.
pub async fn start_control_plane_with(
    config: &Path,
    xds: SocketAddr,
    debug: SocketAddr,
    logs: &Path,
    extra: &[String],
) -> Process {
    let mut command = bosun();
    command
        .arg("control-plane")
        .arg("--config")
        .arg(config)
        .arg("--xds-address")
        .arg(xds.to_string())
        .arg("--debug-address")
        .arg(debug.to_string())
        .arg("--identity-dir")
        .arg(logs)
        .args(extra);
    let process = Process::spawn("control-plane", command, logs);
    wait_ready(&process, debug, "/ready").await;
    process
}

/// What a test hands a proxy, as `bosun up` does: the control plane's TLS address, the
/// mesh root it published in `dir`, and tokens signed with the key there.
pub struct Credentials<'a> {
    pub xds: SocketAddr,
    /// The control plane's identity folder.
    pub dir: &'a Path,
}

impl Credentials<'_> {
    pub fn root_cert(&self) -> std::path::PathBuf {
        self.dir.join("root-cert.pem")
    }

    /// The token of `namespace`/`service_account`, written to a file; its text and path.
    pub fn token(&self, namespace: &str, service_account: &str) -> (String, std::path::PathBuf) {
        let key = bosun_ca::TokenKey::load(&self.dir.join("token-key"))
            .expect("the control plane's token key");
        let token = key.mint(namespace, service_account);
        let path = self
            .dir
            .join(format!("{namespace}.{service_account}.token"));
        std::fs::write(&path, &token).expect("write the token");
        (token, path)
    }
}

/// `bosun proxy` as the sidecar of `workload`, its admin on `ip` at port 15000.
pub fn proxy_command(
    identity: &Credentials<'_>,
    workload: &str,
    namespace: &str,
    service_account: &str,
    ip: IpAddr,
    labels: &[(&str, &str)],
) -> std::process::Command {
    let (_, token_file) = identity.token(namespace, service_account);
    let mut command = bosun();
    command
        .arg("proxy")
        .arg("--xds-address")
        .arg(format!("https://{}", identity.xds))
        .arg("--root-cert")
        .arg(identity.root_cert())
        .arg("--token-file")
        .arg(token_file)
        .arg("--workload")
        .arg(workload)
        .arg("--namespace")
        .arg(namespace)
        .arg("--service-account")
        .arg(service_account)
        .arg("--ip")
        .arg(ip.to_string())
        .arg("--admin-port")
        .arg("15000");
    for (key, value) in labels {
        command.arg("--label").arg(format!("{key}={value}"));
    }
    command
}

/// A real Envoy as `node`'s sidecar, its admin on the node's IP at port 15000, its
/// bootstrap written into the identity folder, with `bosun agent` beside it for its
/// certificate.
pub fn spawn_envoy(
    name: &str,
    envoy: &Path,
    api: bosun_xds::StreamKind,
    node: &bosun_xds::ProxyNode,
    identity: &Credentials<'_>,
) -> Process {
    spawn_envoy_with(name, envoy, api, node, identity, &Default::default())
}

/// As [`spawn_envoy`], with caps on its downstream connections.
pub fn spawn_envoy_with(
    name: &str,
    envoy: &Path,
    api: bosun_xds::StreamKind,
    node: &bosun_xds::ProxyNode,
    identity: &Credentials<'_>,
    limits: &bosun_proxy::ConnectionLimits,
) -> Process {
    let logs = identity.dir;
    let ip = node.ip.expect("a sidecar node has an IP");
    let admin = SocketAddr::new(ip, 15000);
    let account = if node.service_account.is_empty() {
        "default"
    } else {
        node.service_account.as_str()
    };
    let (token, token_file) = identity.token(&node.namespace, account);
    let socket = logs.join(format!("{name}.sds.sock"));
    let mut agent = bosun();
    agent
        .arg("agent")
        .arg("--ca-address")
        .arg(format!("https://{}", identity.xds))
        .arg("--root-cert")
        .arg(identity.root_cert())
        .arg("--token-file")
        .arg(&token_file)
        .arg("--namespace")
        .arg(&node.namespace)
        .arg("--service-account")
        .arg(account)
        .arg("--sds-socket")
        .arg(&socket);
    let agent = Process::spawn(&format!("{name}-agent"), agent, logs);
    let sources = bosun_xds::EnvoySources {
        xds: identity.xds,
        xds_security: Some(bosun_xds::XdsSecurity {
            root_cert: identity.root_cert(),
            token,
        }),
        sds_socket: Some(socket),
    };
    let mut bootstrap = bosun_xds::envoy_bootstrap(node, &sources, admin, api);
    bosun_xds::set_connection_limits(&mut bootstrap, limits);
    let path = logs.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&bootstrap).expect("json")).expect("write");
    let mut command = std::process::Command::new(envoy);
    command.arg("-c").arg(&path).args([
        "--use-dynamic-base-id",
        "--concurrency",
        "1",
        "--log-level",
        "warn",
        // A listener update closes the old config's connections at once, as Bosun's proxy
        // serves the next request with the new config: otherwise Envoy drains them over
        // ten minutes, and a pooled connection keeps the old policy meanwhile.
        "--drain-time-s",
        "1",
        "--drain-strategy",
        "immediate",
    ]);
    Process::spawn(name, command, logs).with_companion(agent)
}

/// Waits until `addr` answers 200 on `path`, failing with the process log.
pub async fn wait_ready(process: &Process, addr: SocketAddr, path: &str) {
    let deadline = std::time::Instant::now() + READY_TIMEOUT;
    loop {
        if get(addr, path)
            .await
            .is_some_and(|reply| reply.status == 200)
        {
            return;
        }
        if std::time::Instant::now() > deadline {
            panic!(
                "{} did not become ready on http://{addr}{path}\n{}",
                process.name,
                process.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn copy_istio_file(name: &str, dir: &Path) {
    let source = istio_file(name);
    std::fs::copy(&source, dir.join(name))
        .unwrap_or_else(|e| panic!("copy {}: {e}", source.display()));
}

pub fn services_yaml(subnet: &Subnet) -> String {
    services_yaml_with_account(subnet, "bookinfo-reviews")
}

/// The services file with the reviews WorkloadEntries running as `account`: the identity
/// every client sidecar then demands of the reviews sidecars.
pub fn services_yaml_with_account(subnet: &Subnet, account: &str) -> String {
    let mut yaml = String::from(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: reviews
spec:
  hosts:
  - reviews.default.svc.cluster.local
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - number: 9080
    name: http
    protocol: HTTP
  workloadSelector:
    labels:
      app: reviews
",
    );
    for (version, host) in VERSIONS {
        yaml.push_str(&format!(
            "---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: reviews-{version}
spec:
  address: {ip}
  ports:
    http: 9080
    tcp: {TCP_PORT}
  labels:
    app: reviews
    version: {version}
  serviceAccount: {account}
",
            ip = subnet.ip(host)
        ));
    }
    yaml.push_str(&format!(
        "---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: client
spec:
  address: {ip}
  labels:
    app: client
",
        ip = subnet.ip(CLIENT_HOST)
    ));
    yaml
}

/// The VirtualService of Istio's 90/10 sample with other weights.
pub fn reviews_split(v1: u32, v2: u32) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
    - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
      weight: {v1}
    - destination:
        host: reviews
        subset: v2
      weight: {v2}
"
    )
}
