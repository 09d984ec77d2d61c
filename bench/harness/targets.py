"""What is measured: the upstream app, and each way of reaching it (directly or through
one proxy), with the configuration each proxy is given.

Addresses: the upstream listens on 127.0.59.1; each proxy gets its own loopback address
(as a workload would in a local mesh) and listens on port 15001, Istio's outbound port.
Requests through a proxy carry `Host: bench:8080`, the mesh service's short name.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .procs import HarnessError, Process, ensure_port_free, free_port, http_ok, wait_until
from .tools import version_line

BODY_BYTES = 1024
SERVICE_HOST_HEADER = "bench:8080"
UPSTREAM_IP = "127.0.59.1"
OUTBOUND_PORT = 15001
ADMIN_PORT = 15000
NAMESPACE = "default"
STARTUP_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class Endpoint:
    """Where the load generator sends requests."""
    host: str
    port: int
    host_header: str | None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"


@dataclass(frozen=True)
class Pinning:
    """Which CPU runs the proxy, and which runs everything else (load generator, upstream)."""
    proxy_cpu: int = 0
    client_cpu: int = 1


class Bench:
    """The shared pieces of a run: a work directory, the upstream app and, for the proxies
    configured over xDS, Bosun's control plane with a mesh folder describing the upstream."""

    def __init__(self, workdir: Path, pinning: Pinning, bosun_bin: Path | None,
                 envoy_bin: Path | None):
        self.workdir = workdir
        self.pinning = pinning
        self.bosun_bin = bosun_bin
        self.envoy_bin = envoy_bin
        self.upstream_port = free_port(UPSTREAM_IP)
        self._upstream: Process | None = None
        self._control_plane: Process | None = None
        self.xds_port = 0

    @property
    def upstream(self) -> Endpoint:
        return Endpoint(UPSTREAM_IP, self.upstream_port, None)

    def start_upstream(self) -> None:
        config = self.workdir / "upstream.nginx.conf"
        config.write_text(_upstream_nginx_config(self.workdir, self.upstream_port))
        self._upstream = Process("upstream (nginx)", _nginx_argv(self.workdir, config),
                                 self.workdir / "upstream.log", cpu=self.pinning.client_cpu).start()
        wait_until("the upstream app", http_ok(UPSTREAM_IP, self.upstream_port),
                   STARTUP_TIMEOUT_SECONDS, [self._upstream])

    def control_plane_xds_port(self) -> int:
        """Starts the control plane on first use; it serves both Bosun's proxy and Envoy."""
        if self._control_plane is not None:
            return self.xds_port
        if self.bosun_bin is None:
            raise HarnessError("the control plane needs the bosun binary")
        mesh = self.workdir / "mesh"
        mesh.mkdir(exist_ok=True)
        (mesh / "bench.yaml").write_text(mesh_folder_yaml(self.upstream_port))
        self.xds_port = free_port()
        debug_port = free_port()
        self._control_plane = Process(
            "control plane",
            [str(self.bosun_bin), "control-plane", "--config", str(mesh),
             "--xds-address", f"127.0.0.1:{self.xds_port}",
             "--debug-address", f"127.0.0.1:{debug_port}"],
            self.workdir / "control-plane.log", cpu=self.pinning.client_cpu,
            env=_quiet_rust_env()).start()
        wait_until("the control plane", http_ok("127.0.0.1", debug_port, "/ready"),
                   STARTUP_TIMEOUT_SECONDS, [self._control_plane])
        return self.xds_port

    def service_pids(self) -> list[int]:
        """The upstream's and control plane's pids: CPU they use is the benchmark's own."""
        return [p.pid for p in (self._upstream, self._control_plane) if p is not None]

    def stop(self) -> None:
        for process in (self._control_plane, self._upstream):
            if process is not None:
                process.stop()


class Target:
    """One way of reaching the upstream. `proxy` is None when nothing sits in between."""

    name = ""
    label = ""
    # Commands beyond the load generators and the upstream that this target runs.
    required_commands: tuple[str, ...] = ()

    def __init__(self, bench: Bench):
        self.bench = bench
        self.proxy: Process | None = None

    def start(self) -> Endpoint:
        raise NotImplementedError

    def version(self) -> str:
        return ""

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
            self.proxy = None

    def _wait_for_route(self, endpoint: Endpoint, also_ready=None) -> None:
        if also_ready is not None:
            wait_until(f"{self.label} readiness", also_ready, STARTUP_TIMEOUT_SECONDS, [self.proxy])
        wait_until(f"a 200 through {self.label}",
                   http_ok(endpoint.host, endpoint.port, "/", endpoint.host_header),
                   STARTUP_TIMEOUT_SECONDS, [self.proxy])


class Direct(Target):
    name = "direct"
    label = "direct (no proxy)"

    def start(self) -> Endpoint:
        return self.bench.upstream

    def version(self) -> str:
        return version_line(["nginx", "-v"])


class BosunProxy(Target):
    name = "bosun"
    label = "Bosun"
    ip = "127.0.60.1"

    def start(self) -> Endpoint:
        endpoint = Endpoint(self.ip, OUTBOUND_PORT, SERVICE_HOST_HEADER)
        _ensure_proxy_ports_free(self.ip, self.label)
        xds_port = self.bench.control_plane_xds_port()
        self.proxy = Process(
            "bosun proxy",
            [str(self.bench.bosun_bin), "proxy",
             "--xds-address", f"http://127.0.0.1:{xds_port}",
             "--workload", "client", "--namespace", NAMESPACE, "--ip", self.ip,
             "--label", "app=client", "--admin-port", str(ADMIN_PORT)],
            self.bench.workdir / "bosun-proxy.log", cpu=self.bench.pinning.proxy_cpu,
            env=_quiet_rust_env()).start()
        self._wait_for_route(endpoint, http_ok(self.ip, ADMIN_PORT, "/ready"))
        return endpoint

    def version(self) -> str:
        return version_line([str(self.bench.bosun_bin), "--version"])


class EnvoyProxy(Target):
    name = "envoy"
    label = "Envoy"
    ip = "127.0.61.1"
    workload = "client-envoy"

    def start(self) -> Endpoint:
        endpoint = Endpoint(self.ip, OUTBOUND_PORT, SERVICE_HOST_HEADER)
        _ensure_proxy_ports_free(self.ip, self.label)
        xds_port = self.bench.control_plane_xds_port()
        bootstrap = self.bench.workdir / "envoy.json"
        bootstrap.write_text(json.dumps(
            envoy_bootstrap(self.ip, self.workload, {"app": "client"}, xds_port), indent=2))
        self.proxy = Process(
            "envoy",
            [str(self.bench.envoy_bin), "-c", str(bootstrap),
             # One worker thread: the figure is per core. No hot restart: no shared memory.
             "--concurrency", "1", "--disable-hot-restart",
             "--log-level", "warn", "--drain-time-s", "1"],
            self.bench.workdir / "envoy.log", cpu=self.bench.pinning.proxy_cpu).start()
        self._wait_for_route(endpoint, http_ok(self.ip, ADMIN_PORT, "/ready"))
        return endpoint

    def version(self) -> str:
        # Envoy prints `<path>  version: <sha>/<version>/...`; the path says nothing.
        line = version_line([str(self.bench.envoy_bin), "--version"])
        return "envoy version: " + line.split("version:", 1)[1].strip() if "version:" in line else line


class HaproxyProxy(Target):
    name = "haproxy"
    label = "HAProxy"
    ip = "127.0.63.1"

    required_commands = ("haproxy",)

    def start(self) -> Endpoint:
        endpoint = Endpoint(self.ip, OUTBOUND_PORT, SERVICE_HOST_HEADER)
        ensure_port_free(self.ip, OUTBOUND_PORT, self.label)
        config = self.bench.workdir / "haproxy.cfg"
        config.write_text(_haproxy_config(self.ip, self.bench.upstream))
        # -db: stay in the foreground as one process (no master/worker).
        self.proxy = Process("haproxy", ["haproxy", "-db", "-f", str(config)],
                             self.bench.workdir / "haproxy.log",
                             cpu=self.bench.pinning.proxy_cpu).start()
        self._wait_for_route(endpoint)
        return endpoint

    def version(self) -> str:
        return version_line(["haproxy", "-v"])


class NginxProxy(Target):
    name = "nginx"
    label = "nginx"
    ip = "127.0.62.1"

    required_commands = ("nginx",)

    def start(self) -> Endpoint:
        endpoint = Endpoint(self.ip, OUTBOUND_PORT, SERVICE_HOST_HEADER)
        ensure_port_free(self.ip, OUTBOUND_PORT, self.label)
        config = self.bench.workdir / "proxy.nginx.conf"
        config.write_text(_proxy_nginx_config(self.bench.workdir, self.ip, self.bench.upstream))
        self.proxy = Process("nginx proxy", _nginx_argv(self.bench.workdir, config),
                             self.bench.workdir / "nginx-proxy.log",
                             cpu=self.bench.pinning.proxy_cpu).start()
        self._wait_for_route(endpoint)
        return endpoint

    def version(self) -> str:
        return version_line(["nginx", "-v"])


TARGETS: dict[str, type[Target]] = {
    target.name: target for target in (Direct, BosunProxy, EnvoyProxy, HaproxyProxy, NginxProxy)
}


def mesh_folder_yaml(upstream_port: int) -> str:
    """The service and its workloads, in Istio's resources, for the control plane."""
    return f"""\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: bench
  namespace: {NAMESPACE}
spec:
  hosts:
  - bench.{NAMESPACE}.svc.cluster.local
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - number: 8080
    name: http
    protocol: HTTP
  workloadSelector:
    labels:
      app: bench
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: bench-upstream
  namespace: {NAMESPACE}
spec:
  address: {UPSTREAM_IP}
  ports:
    http: {upstream_port}
  labels:
    app: bench
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: client
  namespace: {NAMESPACE}
spec:
  address: {BosunProxy.ip}
  labels:
    app: client
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: {EnvoyProxy.workload}
  namespace: {NAMESPACE}
spec:
  address: {EnvoyProxy.ip}
  labels:
    app: client
"""


def envoy_bootstrap(ip: str, workload: str, labels: dict[str, str], xds_port: int) -> dict:
    """The bootstrap `bosun up` writes for an Envoy sidecar (crates/xds/src/bootstrap.rs):
    the node identity of docs/design/local-mesh.md, admin on the workload IP, and ADS."""
    def socket_address(address: str, port: int) -> dict:
        return {"socket_address": {"address": address, "port_value": port}}

    return {
        "node": {
            "id": f"sidecar~{ip}~{workload}.{NAMESPACE}~{NAMESPACE}.svc.cluster.local",
            "cluster": f"{workload}.{NAMESPACE}",
            "metadata": {
                "NAMESPACE": NAMESPACE,
                "WORKLOAD_NAME": workload,
                "LABELS": labels,
                "SERVICE_ACCOUNT": "default",
                "INSTANCE_IPS": ip,
                "BOSUN_OUTBOUND_PORT": str(OUTBOUND_PORT),
                "BOSUN_APP_PORTS": {},
            },
        },
        "admin": {"address": socket_address(ip, ADMIN_PORT)},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}],
                "set_node_on_first_message_only": True,
            },
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "static_resources": {
            "clusters": [{
                "name": "xds-grpc",
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": {
                    "cluster_name": "xds-grpc",
                    "endpoints": [{"lb_endpoints": [
                        {"endpoint": {"address": socket_address("127.0.0.1", xds_port)}}]}],
                },
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": {"http2_protocol_options": {}},
                    },
                },
            }],
        },
    }


def _ensure_proxy_ports_free(ip: str, label: str) -> None:
    for port in (OUTBOUND_PORT, ADMIN_PORT):
        ensure_port_free(ip, port, label)


def _quiet_rust_env() -> dict[str, str]:
    # The proxies all log at warn: none of them logs per request at that level. One tokio
    # worker, as Envoy gets one worker: taskset to one CPU gives the same, this says so.
    return {**os.environ, "RUST_LOG": "warn", "TOKIO_WORKER_THREADS": "1"}


def _nginx_argv(workdir: Path, config: Path) -> list[str]:
    # -e: the startup error log goes to the work dir, not /var/log/nginx.
    return ["nginx", "-p", str(workdir), "-e", str(workdir / "nginx-startup.log"),
            "-c", str(config)]


def _nginx_common(workdir: Path, name: str) -> str:
    """One process, one worker, in the foreground, writing only inside the work dir."""
    temp = workdir / f"{name}-temp"
    temp.mkdir(exist_ok=True)
    return f"""\
daemon off;
master_process off;
worker_processes 1;
pid {workdir}/{name}.pid;
error_log {workdir}/{name}.error.log warn;
events {{ worker_connections 16384; }}
"""


def _nginx_http_common(workdir: Path, name: str) -> str:
    temp = workdir / f"{name}-temp"
    return f"""\
    access_log off;
    keepalive_timeout 300s;
    keepalive_requests 10000000;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
"""


def _upstream_nginx_config(workdir: Path, port: int) -> str:
    body = "x" * (BODY_BYTES - 1) + "\\n"
    return _nginx_common(workdir, "upstream") + f"""\
http {{
{_nginx_http_common(workdir, "upstream")}
    server {{
        listen {UPSTREAM_IP}:{port} backlog=4096;
        location / {{
            default_type application/octet-stream;
            return 200 "{body}";
        }}
    }}
}}
"""


def _proxy_nginx_config(workdir: Path, ip: str, upstream: Endpoint) -> str:
    return _nginx_common(workdir, "proxy") + f"""\
http {{
{_nginx_http_common(workdir, "proxy")}
    upstream bench {{
        server {upstream.host}:{upstream.port};
        keepalive 256;
        keepalive_requests 10000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen {ip}:{OUTBOUND_PORT} backlog=4096;
        location / {{
            proxy_pass http://bench;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def _haproxy_config(ip: str, upstream: Endpoint) -> str:
    return f"""\
global
    nbthread 1
    maxconn 8000

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s

frontend bench
    bind {ip}:{OUTBOUND_PORT}
    default_backend upstream

backend upstream
    server app {upstream.host}:{upstream.port}
"""
