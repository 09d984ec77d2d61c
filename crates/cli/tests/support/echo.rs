//! Istio's echo topology on loopback addresses, for the corpus runners: services, each
//! one workload (a sample app echoing what it saw) behind its sidecar, on the ports the
//! runner names, with a control plane reading the folder cases are written to. One
//! workload's sidecar may be a real Envoy; the others are Bosun's proxy.

use std::net::{IpAddr, SocketAddr};

use super::mesh::{
    ClientProxy, Credentials, proxy_command, spawn_envoy, start_control_plane, wait_ready,
};
use super::{Process, Subnet, bosun, envoy_binary, push};

const CONTROL_PLANE_HOST: u8 = 250;
const EXT_AUTHZ_HOST: u8 = 240;
/// Istio's ext-authz sample's ports: the HTTP and the gRPC check API.
pub const EXT_AUTHZ_PORTS: (u16, u16) = (8000, 9000);

/// A service of the topology: its namespace, name and loopback host number.
#[derive(Debug, Clone, Copy)]
pub struct EchoWorkload {
    pub namespace: &'static str,
    pub service: &'static str,
    pub host: u8,
}

/// A port of every service: its name (`http`, `tcp`), the service port, the workload port
/// its sidecar listens on, and the app's port behind it.
#[derive(Debug, Clone, Copy)]
pub struct EchoPort {
    pub name: &'static str,
    pub service_port: u16,
    pub workload_port: u16,
    pub app_port: u16,
}

impl EchoPort {
    fn protocol(&self) -> &'static str {
        if self.name == "tcp" { "TCP" } else { "HTTP" }
    }
}

pub struct EchoMesh {
    pub subnet: Subnet,
    pub dir: tempfile::TempDir,
    logs: tempfile::TempDir,
    processes: Vec<Process>,
    workloads: Vec<EchoWorkload>,
}

impl EchoMesh {
    /// Starts the topology; the sidecar of `envoy_at` (namespace, service) is `proxy`
    /// (Bosun's everywhere when `proxy` is Bosun's). `None` without an Envoy binary.
    pub async fn start(
        workloads: &[EchoWorkload],
        ports: &[EchoPort],
        envoy_at: (&str, &str),
        proxy: ClientProxy,
    ) -> Option<Self> {
        let envoy = match proxy {
            ClientProxy::Envoy(api) => Some((envoy_binary()?, api)),
            ClientProxy::Bosun => None,
        };
        let mut mesh = EchoMesh {
            subnet: Subnet::allocate(),
            dir: tempfile::tempdir().expect("config dir"),
            logs: tempfile::tempdir().expect("log dir"),
            processes: Vec::new(),
            workloads: workloads.to_vec(),
        };
        std::fs::write(mesh.dir.path().join("echo.yaml"), mesh.topology_yaml(ports))
            .expect("write");
        let control_plane =
            start_control_plane(mesh.dir.path(), mesh.xds(), mesh.debug(), mesh.logs.path()).await;
        mesh.processes.push(control_plane);
        let http = ports
            .iter()
            .find(|p| p.name != "tcp")
            .expect("an HTTP port");
        for workload in workloads {
            let EchoWorkload {
                namespace,
                service,
                host,
            } = *workload;
            let ip = mesh.subnet.ip(host);
            let name = format!("{namespace}-{service}");
            let mut app = bosun();
            app.args(["sample", "serve", "--service", service, "--echo-headers"])
                .arg("--listen")
                .arg(SocketAddr::new(ip, http.app_port).to_string());
            if let Some(tcp) = ports.iter().find(|p| p.name == "tcp") {
                app.arg("--tcp-port").arg(tcp.app_port.to_string());
            }
            let app = Process::spawn(&format!("{name}-app"), app, mesh.logs.path());
            let proxy = match &envoy {
                Some((envoy, api)) if (namespace, service) == envoy_at => {
                    let mut node = bosun_xds::ProxyNode::sidecar(ip, service, namespace);
                    node.labels.insert("app".into(), service.into());
                    node.labels.insert("version".into(), "v1".into());
                    for port in ports {
                        node.app_ports.insert(port.workload_port, port.app_port);
                    }
                    node.service_account = service.into();
                    spawn_envoy(
                        &format!("{name}-envoy"),
                        envoy,
                        *api,
                        &node,
                        &mesh.credentials(),
                    )
                }
                _ => {
                    let labels = [("app", service), ("version", "v1")];
                    let mut proxy = proxy_command(
                        &mesh.credentials(),
                        service,
                        namespace,
                        service,
                        ip,
                        &labels,
                    );
                    for port in ports {
                        proxy
                            .arg("--app-port")
                            .arg(format!("{}={}", port.workload_port, port.app_port));
                    }
                    Process::spawn(&format!("{name}-proxy"), proxy, mesh.logs.path())
                }
            };
            wait_ready(&proxy, SocketAddr::new(ip, 15000), "/ready").await;
            wait_ready(&app, SocketAddr::new(ip, http.app_port), "/healthz").await;
            mesh.processes.push(app);
            mesh.processes.push(proxy);
        }
        Some(mesh)
    }

    pub fn xds(&self) -> SocketAddr {
        SocketAddr::new(self.subnet.ip(CONTROL_PLANE_HOST), 15012)
    }

    /// What each proxy of the mesh is handed.
    pub fn credentials(&self) -> Credentials<'_> {
        Credentials {
            xds: self.xds(),
            dir: self.logs.path(),
        }
    }

    pub fn debug(&self) -> SocketAddr {
        SocketAddr::new(self.subnet.ip(CONTROL_PLANE_HOST), 15014)
    }

    /// The address of a workload of the topology.
    pub fn ip_of(&self, namespace: &str, service: &str) -> IpAddr {
        let workload = self
            .workloads
            .iter()
            .find(|w| w.namespace == namespace && w.service == service)
            .expect("a workload of the topology");
        self.subnet.ip(workload.host)
    }

    /// Writes (or removes) the case's config and waits until every proxy has it.
    pub async fn apply(&self, config: Option<&str>) -> Vec<String> {
        push::apply(self.debug(), self.dir.path(), self.workloads.len(), config).await
    }

    /// [`EchoMesh::apply`] under a mesh config (`mesh.yaml`; `None` removes it).
    pub async fn apply_with_mesh(&self, config: Option<&str>, mesh: Option<&str>) -> Vec<String> {
        let path = self.dir.path().join("mesh.yaml");
        match mesh {
            Some(mesh) => std::fs::write(&path, mesh).expect("write mesh.yaml"),
            None => {
                let _ = std::fs::remove_file(&path);
            }
        }
        self.apply(config).await
    }

    /// The address of the ext-authz sample ([`EchoMesh::add_ext_authz`]).
    pub fn ext_authz_ip(&self) -> IpAddr {
        self.subnet.ip(EXT_AUTHZ_HOST)
    }

    /// Runs Istio's ext-authz sample (`bosun sample ext-authz`) as service
    /// `ext-authz.servers.svc.cluster.local`, without a sidecar: HTTP checks on 8000,
    /// gRPC checks on 9000, allowing connections of service account `a`.
    pub async fn add_ext_authz(&mut self) {
        let ip = self.subnet.ip(EXT_AUTHZ_HOST);
        let (http, grpc) = EXT_AUTHZ_PORTS;
        let mut app = bosun();
        app.args(["sample", "ext-authz", "--allow-service-account", "a"])
            .arg("--http")
            .arg(SocketAddr::new(ip, http).to_string())
            .arg("--grpc")
            .arg(SocketAddr::new(ip, grpc).to_string());
        let app = Process::spawn("servers-ext-authz", app, self.logs.path());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while tokio::net::TcpStream::connect(SocketAddr::new(ip, grpc))
            .await
            .is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the ext-authz sample did not start\n{}",
                app.log_tail()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        self.processes.push(app);
        std::fs::write(
            self.dir.path().join("ext-authz.yaml"),
            format!(
                "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ext-authz, namespace: servers}}
spec:
  hosts: [ext-authz.servers.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {{number: {http}, name: http, protocol: HTTP}}
  - {{number: {grpc}, name: grpc, protocol: GRPC}}
  workloadSelector: {{labels: {{app: ext-authz}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: ext-authz, namespace: servers}}
spec:
  address: {ip}
  labels: {{app: ext-authz}}
"
            ),
        )
        .expect("write");
        self.apply(None).await;
    }

    pub fn logs(&self) -> String {
        self.processes
            .iter()
            .map(|p| format!("--- {} ---\n{}\n", p.name, p.log_tail()))
            .collect()
    }

    fn topology_yaml(&self, ports: &[EchoPort]) -> String {
        let service_ports: String = ports
            .iter()
            .map(|p| {
                format!(
                    "\n  - {{number: {}, name: {}, protocol: {}, targetPort: {}}}",
                    p.service_port,
                    p.name,
                    p.protocol(),
                    p.workload_port
                )
            })
            .collect();
        let workload_ports: Vec<String> = ports
            .iter()
            .map(|p| format!("{}: {}", p.name, p.workload_port))
            .collect();
        let workload_ports = workload_ports.join(", ");
        let mut out = String::new();
        for workload in &self.workloads {
            let EchoWorkload {
                namespace,
                service,
                host,
            } = *workload;
            let ip: IpAddr = self.subnet.ip(host);
            out.push_str(&format!(
                "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {service}, namespace: {namespace}}}
spec:
  hosts: [{service}.{namespace}.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:{service_ports}
  workloadSelector: {{labels: {{app: {service}}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {service}, namespace: {namespace}}}
spec:
  address: {ip}
  ports: {{{workload_ports}}}
  labels: {{app: {service}, version: v1}}
  serviceAccount: {service}
---
"
            ));
        }
        out
    }
}
