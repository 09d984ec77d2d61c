"""What is measured: the upstream app, and each way of reaching it (directly, through
one proxy, or through two sidecars), with the configuration each proxy is given.

Addresses: the upstream listens on 127.0.59.1; each proxy gets its own loopback address
(as a workload would in a local mesh) and listens on port 15001, Istio's outbound port.
Requests through one proxy carry `Host: bench:8080`, the mesh service's short name.

Two sidecars: a client sidecar (127.0.6x.3) routes `Host: bench2-<kind>:8080` to the
server workload's inbound listener (127.0.6x.2:8080), whose sidecar forwards to the app on
the same IP, as in docs/design/local-mesh.md; the upstream nginx also listens there.

Two sidecars with mutual TLS: the same with the client at 127.0.6x.5 and the server at
127.0.6x.4 (`Host: bench2-<kind>-mtls:8080`), whose WorkloadEntries name service accounts,
so the client sidecar speaks Istio mTLS to the server's inbound listener.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .pki import ClientCertificate, MeshPki, spiffe_id
from .procs import (HarnessError, Process, ensure_port_free, free_port, free_port_on_all,
                    http_get, http_ok, wait_until)
from .tools import version_line

BODY_BYTES = 1024
SERVICE_HOST_HEADER = "bench:8080"
# The same upstream as another service whose routes are always plain (see ROUTINGS), for
# the bosun-plain target: the cost of a route's policies, measured in one run.
PLAIN_SERVICE = "bench-plain"
PLAIN_HOST_HEADER = f"{PLAIN_SERVICE}:8080"
UPSTREAM_IP = "127.0.59.1"
OUTBOUND_PORT = 15001
ADMIN_PORT = 15000
# nginx 1.22 speaks h2c only on a listening socket of its own, where HTTP/1.1 fails.
NGINX_H2C_PORT = 15002
# The server workload's port in the two-sidecar scenarios (WorkloadEntry `http: 8080`).
SERVER_PORT = 8080
NAMESPACE = "default"
# The name the control plane's serving certificate carries (bosun_ca::CONTROL_PLANE_NAME).
CONTROL_PLANE_NAME = "istiod.istio-system.svc"
STARTUP_TIMEOUT_SECONDS = 30.0
# The service accounts of the mTLS scenarios' workloads: their SPIFFE identities.
CLIENT_SERVICE_ACCOUNT = "bench-client"
SERVER_SERVICE_ACCOUNT = "bench-server"
# Where the upstream echoes the `x-forwarded-client-cert` it received: after an mTLS hop
# the server sidecar puts the caller's identity there.
XFCC_PATH = "/xfcc"


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
                 envoy_bin: Path | None, mesh_ca: bool = False, routing: str = "default"):
        self.workdir = workdir
        self.routing = routing
        self.pinning = pinning
        self.bosun_bin = bosun_bin
        self.envoy_bin = envoy_bin
        # With mTLS targets the control plane signs from a plug-in CA the harness makes
        # (so that the harness can sign a client certificate of its own); otherwise it
        # makes its own root, as it does when given none.
        self.pki = MeshPki(workdir / "pki") if mesh_ca else None
        self.upstream_port = 0
        self.upstream_h2c_port = 0
        self._upstream: Process | None = None
        self._control_plane: Process | None = None
        self.xds_port = 0
        self.identity_dir = workdir / "identity"
        # Processes that serve a proxy (Envoy's certificate agents), stopped with the rest.
        self.companions: list[Process] = []

    @property
    def upstream(self) -> Endpoint:
        return Endpoint(UPSTREAM_IP, self.upstream_port, None)

    @property
    def upstream_h2c(self) -> Endpoint:
        """The same app over h2c (prior knowledge), on a port of its own: nginx 1.22 cannot
        serve HTTP/1.1 and h2c on one cleartext port."""
        return Endpoint(UPSTREAM_IP, self.upstream_h2c_port, None)

    def start_upstream(self, app_ips: list[str]) -> None:
        """Starts the app on the upstream IP and on `app_ips`, the workload IPs whose server
        sidecars forward to `<workload IP>:<app port>`; the same port on each, since the
        mesh folder names one app port."""
        self.upstream_port = free_port_on_all([UPSTREAM_IP, *app_ips])
        self.upstream_h2c_port = free_port(UPSTREAM_IP)
        config = self.workdir / "upstream.nginx.conf"
        config.write_text(_upstream_nginx_config(self.workdir, self.upstream_port,
                                                 self.upstream_h2c_port, app_ips))
        self._upstream = Process("upstream (nginx)", _nginx_argv(self.workdir, config),
                                 self.workdir / "upstream.log", cpu=self.pinning.client_cpu).start()
        for ip in (UPSTREAM_IP, *app_ips):
            wait_until(f"the upstream app on {ip}", http_ok(ip, self.upstream_port),
                       STARTUP_TIMEOUT_SECONDS, [self._upstream])

    def control_plane_xds_port(self) -> int:
        """Starts the control plane on first use; it serves both Bosun's proxy and Envoy."""
        if self._control_plane is not None:
            return self.xds_port
        if self.bosun_bin is None:
            raise HarnessError("the control plane needs the bosun binary")
        mesh = self.workdir / "mesh"
        mesh.mkdir(exist_ok=True)
        (mesh / "bench.yaml").write_text(mesh_folder_yaml(self.upstream_port, self.routing))
        self.xds_port = free_port()
        debug_port = free_port()
        argv = [str(self.bosun_bin), "control-plane", "--config", str(mesh),
                "--xds-address", f"127.0.0.1:{self.xds_port}",
                "--debug-address", f"127.0.0.1:{debug_port}",
                "--identity-dir", str(self.identity_dir)]
        if self.pki is not None:
            argv += ["--ca-dir", str(self.pki.create_ca())]
        self._control_plane = Process(
            "control plane", argv, self.workdir / "control-plane.log",
            cpu=self.pinning.client_cpu, env=_quiet_rust_env()).start()
        wait_until("the control plane", http_ok("127.0.0.1", debug_port, "/ready"),
                   STARTUP_TIMEOUT_SECONDS, [self._control_plane])
        return self.xds_port

    def client_certificate(self) -> ClientCertificate:
        """The harness's own workload certificate (`bench-client`), from the mesh CA."""
        if self.pki is None:
            raise HarnessError("a client certificate needs the mesh CA (an mTLS target)")
        self.control_plane_xds_port()
        return self.pki.client_certificate(NAMESPACE, CLIENT_SERVICE_ACCOUNT)

    def root_cert(self) -> Path:
        """The mesh root the control plane publishes for proxies."""
        self.control_plane_xds_port()
        return self.identity_dir / "root-cert.pem"

    def token_file(self, name: str, service_account: str) -> tuple[str, Path]:
        """A workload token for `service_account`, as `bosun up` hands one to each proxy."""
        self.control_plane_xds_port()
        token = subprocess.run(
            [str(self.bosun_bin), "token", "--identity-dir", str(self.identity_dir),
             "--namespace", NAMESPACE, "--service-account", service_account],
            check=True, capture_output=True, text=True).stdout.strip()
        path = self.identity_dir / f"{name}.token"
        path.write_text(token)
        path.chmod(0o600)
        return token, path

    def sidecar_command(self) -> list[str]:
        """How Bosun's sidecar is started, as `bosun up` does it: the lean `bosun-proxy`
        binary when it was built beside `bosun` (the sidecar as deployed, with only the
        proxy's code mapped), else `bosun proxy`, the same proxy in the main binary."""
        if self.bosun_bin is None:
            raise HarnessError("Bosun's sidecar needs the bosun binary")
        lean = self.bosun_bin.with_name("bosun-proxy")
        return [str(lean)] if lean.is_file() else [str(self.bosun_bin), "proxy"]

    def sidecar_version(self) -> str:
        """The version line of the program that runs as the sidecar (it names itself)."""
        return version_line([self.sidecar_command()[0], "--version"])

    def service_pids(self) -> list[int]:
        """The upstream's and control plane's pids: CPU they use is the benchmark's own."""
        return [p.pid for p in (self._upstream, self._control_plane) if p is not None]

    def stop(self) -> None:
        for process in (*self.companions, self._control_plane, self._upstream):
            if process is not None:
                process.stop()


class Target:
    """One way of reaching the upstream, through the proxies in `proxies` (client side
    first); none when nothing sits in between."""

    name = ""
    label = ""
    # Commands beyond the load generators and the upstream that this target runs.
    required_commands: tuple[str, ...] = ()
    # Workload IPs where the upstream app must listen too (a server sidecar forwards there).
    app_ips: tuple[str, ...] = ()
    # Proxies a request crosses: 0 direct, 1 a proxy, 2 a client and a server sidecar.
    hops = 1
    # The target whose figures this one's are compared with (ratios in the table).
    baseline = "envoy"
    # Bosun's binary runs the control plane that configures Envoy too.
    needs_bosun = False
    needs_envoy = False
    # Whether the sidecars speak mutual TLS to each other (the control plane then signs
    # from the harness's plug-in CA).
    mtls = False

    def __init__(self, bench: Bench):
        self.bench = bench
        self.proxies: list[Process] = []
        # Where h2c (HTTP/2 with prior knowledge) reaches the same path; None: no h2c.
        self.h2c_endpoint: Endpoint | None = None
        # Where new mTLS handshakes are counted (a server sidecar's inbound port), and the
        # proxy that terminates them; None: no handshake figure.
        self.handshake_endpoint: Endpoint | None = None
        self.handshake_proxy: Process | None = None

    def start(self) -> Endpoint:
        raise NotImplementedError

    def version(self) -> str:
        return ""

    @property
    def version_label(self) -> str:
        """What `version()` is listed as among the versions: one entry per program."""
        return self.label

    @property
    def pids(self) -> list[int]:
        return [proxy.pid for proxy in self.proxies]

    def check_alive(self) -> None:
        for proxy in self.proxies:
            proxy.check_alive()

    def stop(self) -> None:
        for proxy in self.proxies:
            proxy.stop()
        self.proxies = []

    def _wait_for_route(self, endpoint: Endpoint, also_ready=None) -> None:
        if also_ready is not None:
            wait_until(f"{self.label} readiness", also_ready, STARTUP_TIMEOUT_SECONDS,
                       self.proxies)
        wait_until(f"a 200 through {self.label}",
                   http_ok(endpoint.host, endpoint.port, "/", endpoint.host_header),
                   STARTUP_TIMEOUT_SECONDS, self.proxies)


class Direct(Target):
    name = "direct"
    label = "direct (no proxy)"
    hops = 0

    def start(self) -> Endpoint:
        self.h2c_endpoint = self.bench.upstream_h2c
        return self.bench.upstream

    def version(self) -> str:
        return version_line(["nginx", "-v"])

    @property
    def version_label(self) -> str:
        return "upstream (nginx)"


class BosunProxy(Target):
    name = "bosun"
    label = "Bosun"
    ip = "127.0.60.1"
    workload = "client"
    host_header = SERVICE_HOST_HEADER
    needs_bosun = True

    def start(self) -> Endpoint:
        endpoint = Endpoint(self.ip, OUTBOUND_PORT, self.host_header)
        _ensure_proxy_ports_free(self.ip, self.label)
        self.proxies = [_start_bosun_sidecar(self.bench, f"{self.name}-proxy", self.ip,
                                             self.workload, "client", {})]
        self._wait_for_route(endpoint, http_ok(self.ip, ADMIN_PORT, "/ready"))
        # One listener for HTTP/1.1 and h2c: hyper tells them apart by the preface.
        self.h2c_endpoint = endpoint
        return endpoint

    def version(self) -> str:
        return self.bench.sidecar_version()


class BosunPlainProxy(BosunProxy):
    """Bosun's sidecar to the same upstream through a service whose route carries no
    timeout, retry policy or fault, whatever --routing says: beside `bosun`, the cost of
    those policies."""
    name = "bosun-plain"
    label = "Bosun, plain routing"
    ip = "127.0.60.2"
    workload = "client-plain"
    host_header = PLAIN_HOST_HEADER
    baseline = "bosun"


class EnvoyProxy(Target):
    name = "envoy"
    label = "Envoy"
    ip = "127.0.61.1"
    workload = "client-envoy"
    needs_bosun = needs_envoy = True

    def start(self) -> Endpoint:
        endpoint = Endpoint(self.ip, OUTBOUND_PORT, SERVICE_HOST_HEADER)
        _ensure_proxy_ports_free(self.ip, self.label)
        self.proxies = [_start_envoy_sidecar(self.bench, "envoy", self.ip, self.workload,
                                             "client", {})]
        self._wait_for_route(endpoint, http_ok(self.ip, ADMIN_PORT, "/ready"))
        # The control plane's listeners use codec AUTO: Envoy detects h2c's preface.
        self.h2c_endpoint = endpoint
        return endpoint

    def version(self) -> str:
        return envoy_version(self.bench)


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
        self.proxies = [Process("haproxy", ["haproxy", "-db", "-f", str(config)],
                                self.bench.workdir / "haproxy.log",
                                cpu=self.bench.pinning.proxy_cpu).start()]
        self._wait_for_route(endpoint)
        # A `mode http` bind switches to HTTP/2 when a connection opens with h2's preface,
        # so h2c needs no `proto h2` (which would refuse HTTP/1.1 there).
        self.h2c_endpoint = endpoint
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
        for port in (OUTBOUND_PORT, NGINX_H2C_PORT):
            ensure_port_free(self.ip, port, self.label)
        config = self.bench.workdir / "proxy.nginx.conf"
        config.write_text(_proxy_nginx_config(self.bench.workdir, self.ip, self.bench.upstream))
        self.proxies = [Process("nginx proxy", _nginx_argv(self.bench.workdir, config),
                                self.bench.workdir / "nginx-proxy.log",
                                cpu=self.bench.pinning.proxy_cpu).start()]
        self._wait_for_route(endpoint)
        self.h2c_endpoint = Endpoint(self.ip, NGINX_H2C_PORT, SERVICE_HOST_HEADER)
        return endpoint

    def version(self) -> str:
        return version_line(["nginx", "-v"])


class TwoSidecars(Target):
    """A request between two meshed workloads: the load generator is the client app, its
    sidecar routes to the server workload's inbound listener, whose sidecar forwards to the
    app on the server's IP. Both sidecars are of one kind and share the proxy CPU."""

    hops = 2
    client_ip = ""
    server_ip = ""
    client_workload = ""
    server_workload = ""
    # The service's short name, and the `app` label it selects the server by: one per
    # proxy kind, so that a Bosun client never reaches an Envoy server or the reverse.
    service = ""
    # The WorkloadEntries' service accounts, which each sidecar runs as; None (plaintext
    # between the sidecars): the entries name none and the sidecars run as `default`.
    client_service_account: str | None = None
    server_service_account: str | None = None

    def start(self) -> Endpoint:
        endpoint = Endpoint(self.client_ip, OUTBOUND_PORT, f"{self.service}:{SERVER_PORT}")
        for ip in (self.client_ip, self.server_ip):
            _ensure_proxy_ports_free(ip, self.label)
        ensure_port_free(self.server_ip, SERVER_PORT, self.label)
        server = self._start_sidecar(f"{self.name}-server", self.server_ip,
                                     self.server_workload, self.service,
                                     {SERVER_PORT: self.bench.upstream_port},
                                     self.server_service_account)
        self.proxies = [server]
        inbound = Endpoint(self.server_ip, SERVER_PORT, endpoint.host_header)
        self._wait_for_route(inbound, http_ok(self.server_ip, ADMIN_PORT, "/ready"))
        client = self._start_sidecar(f"{self.name}-client", self.client_ip,
                                     self.client_workload, "client", {},
                                     self.client_service_account)
        self.proxies = [client, server]
        self._wait_for_route(endpoint, http_ok(self.client_ip, ADMIN_PORT, "/ready"))
        if self.mtls:
            self._check_mtls(endpoint, inbound)
            self.handshake_endpoint = inbound
            self.handshake_proxy = server
        self._check_metrics()
        # h2c reaches the client sidecar's outbound listener; the hop between the
        # sidecars stays HTTP/1.1, as the service port is plain `http`.
        self.h2c_endpoint = endpoint
        return endpoint

    def _check_mtls(self, endpoint: Endpoint, inbound: Endpoint) -> None:
        """Fails the target unless the hop between its sidecars is mutual TLS with the
        workloads' identities, and the server's inbound port takes the harness's own
        certificate (the handshakes counted later)."""
        client_id = spiffe_id(NAMESPACE, self.client_service_account)
        server_id = spiffe_id(NAMESPACE, self.server_service_account)
        # The server sidecar sets the header only on its mTLS chain: a plaintext hop
        # (PERMISSIVE takes both) reaches the app without it.
        status, body = http_get(endpoint.host, endpoint.port, XFCC_PATH, endpoint.host_header)
        xfcc = body.decode(errors="replace").strip()
        if status != 200 or f"URI={client_id}" not in xfcc or f"By={server_id}" not in xfcc:
            raise HarnessError(
                f"{self.label}: the hop between the sidecars is not mTLS: through the client "
                f"sidecar the app got x-forwarded-client-cert {xfcc!r} (status {status}); "
                f"expected By={server_id} and URI={client_id}")
        certificate = self.bench.client_certificate()
        found: dict[str, str] = {}

        def harness_handshake() -> bool:
            presented, found["xfcc"] = _mtls_get(inbound, XFCC_PATH, certificate)
            found["presented"] = ", ".join(presented) or "no URI SAN"
            return server_id in presented and f"URI={certificate.identity}" in found["xfcc"]

        try:
            wait_until(f"mTLS with {certificate.identity}'s certificate into "
                       f"{inbound.host}:{inbound.port}", harness_handshake,
                       STARTUP_TIMEOUT_SECONDS, self.proxies)
        except HarnessError as error:
            raise HarnessError(
                f"{self.label}: the server sidecar's inbound port did not take the "
                f"harness's mTLS as expected (it presented {found.get('presented', '?')}, "
                f"expected {server_id}; the app got x-forwarded-client-cert "
                f"{found.get('xfcc', '')!r}): {error}") from None

    def _check_metrics(self) -> None:
        """Makes sure the requests measured are reported as a mesh reports them, where
        the sidecars do: the checks above went through both."""

    def _start_sidecar(self, log_name: str, ip: str, workload: str, app: str,
                       app_ports: dict[int, int], service_account: str | None) -> Process:
        raise NotImplementedError


class BosunTwoSidecars(TwoSidecars):
    name = "bosun-2hop"
    label = "Bosun, 2 sidecars"
    baseline = "envoy-2hop"
    client_ip = "127.0.60.3"
    server_ip = "127.0.60.2"
    client_workload = "client-2hop"
    server_workload = "bench-server"
    service = "bench2-bosun"
    app_ips = (server_ip,)
    needs_bosun = True

    def _start_sidecar(self, log_name: str, ip: str, workload: str, app: str,
                       app_ports: dict[int, int], service_account: str | None) -> Process:
        return _start_bosun_sidecar(self.bench, log_name, ip, workload, app, app_ports,
                                    service_account)

    def _check_metrics(self) -> None:
        """Bosun's sidecars report Istio's standard metrics on every request measured:
        the client's as `source`, the server's as `destination` (over mTLS, naming the
        caller's identity). A pair that stopped reporting would measure less work."""
        expected = [
            (self.client_ip, f'istio_requests_total{{reporter="source",'
                             f'source_workload="{self.client_workload}"'),
            (self.server_ip, 'istio_requests_total{reporter="destination",'),
        ]
        if self.mtls:
            # Only a sidecar behind mTLS is told who calls (Istio's metadata exchange).
            expected += [
                (self.server_ip, f'istio_requests_total{{reporter="destination",'
                                 f'source_workload="{self.client_workload}"'),
                (self.server_ip, 'connection_security_policy="mutual_tls"'),
            ]
        for ip, wanted in expected:
            status, body = http_get(ip, ADMIN_PORT, "/stats/prometheus", "admin")
            if status != 200 or wanted not in body.decode(errors="replace"):
                raise HarnessError(
                    f"{self.label}: the sidecar at {ip} does not report Istio's metrics "
                    f"as expected (status {status}; no line with {wanted!r})")

    def version(self) -> str:
        return self.bench.sidecar_version()

    @property
    def version_label(self) -> str:
        return BosunProxy.label


class EnvoyTwoSidecars(TwoSidecars):
    name = "envoy-2hop"
    label = "Envoy, 2 sidecars"
    baseline = "envoy-2hop"
    client_ip = "127.0.61.3"
    server_ip = "127.0.61.2"
    client_workload = "client-2hop-envoy"
    server_workload = "bench-server-envoy"
    service = "bench2-envoy"
    app_ips = (server_ip,)
    needs_bosun = needs_envoy = True

    def _start_sidecar(self, log_name: str, ip: str, workload: str, app: str,
                       app_ports: dict[int, int], service_account: str | None) -> Process:
        return _start_envoy_sidecar(self.bench, log_name, ip, workload, app, app_ports,
                                    service_account)

    def version(self) -> str:
        return envoy_version(self.bench)

    @property
    def version_label(self) -> str:
        return EnvoyProxy.label


class BosunTwoSidecarsMtls(BosunTwoSidecars):
    name = "bosun-2hop-mtls"
    label = "Bosun, 2 sidecars, mTLS"
    baseline = "envoy-2hop-mtls"
    client_ip = "127.0.60.5"
    server_ip = "127.0.60.4"
    client_workload = "client-2hop-mtls"
    server_workload = "bench-server-mtls"
    service = "bench2-bosun-mtls"
    app_ips = (server_ip,)
    client_service_account = CLIENT_SERVICE_ACCOUNT
    server_service_account = SERVER_SERVICE_ACCOUNT
    mtls = True
    required_commands = ("openssl",)


class EnvoyTwoSidecarsMtls(EnvoyTwoSidecars):
    name = "envoy-2hop-mtls"
    label = "Envoy, 2 sidecars, mTLS"
    baseline = "envoy-2hop-mtls"
    client_ip = "127.0.61.5"
    server_ip = "127.0.61.4"
    client_workload = "client-2hop-envoy-mtls"
    server_workload = "bench-server-envoy-mtls"
    service = "bench2-envoy-mtls"
    app_ips = (server_ip,)
    client_service_account = CLIENT_SERVICE_ACCOUNT
    server_service_account = SERVER_SERVICE_ACCOUNT
    mtls = True
    required_commands = ("openssl",)


TARGETS: dict[str, type[Target]] = {
    target.name: target for target in (Direct, BosunProxy, BosunPlainProxy, EnvoyProxy,
                                       HaproxyProxy, NginxProxy,
                                       BosunTwoSidecars, EnvoyTwoSidecars,
                                       BosunTwoSidecarsMtls, EnvoyTwoSidecarsMtls)
}


def _mtls_get(endpoint: Endpoint, path: str,
              certificate: ClientCertificate) -> tuple[list[str], str]:
    """One request over mTLS with `certificate`: the URI SANs the server presented (its
    chain verified against the mesh root) and the response body (empty unless 200)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(certificate.root))
    # A SPIFFE certificate names a URI, not a host: the identity is checked by the caller.
    context.check_hostname = False
    context.load_cert_chain(str(certificate.chain), str(certificate.key))
    connection = http.client.HTTPSConnection(endpoint.host, endpoint.port, timeout=2.0,
                                             context=context)
    try:
        connection.request("GET", path, headers={"Host": endpoint.host_header or endpoint.host})
        response = connection.getresponse()
        body = response.read().decode(errors="replace").strip()
        peer = connection.sock.getpeercert() or {}
        uris = [value for kind, value in peer.get("subjectAltName", ()) if kind == "URI"]
        return uris, body if response.status == 200 else ""
    finally:
        connection.close()


def _start_bosun_sidecar(bench: Bench, log_name: str, ip: str, workload: str, app: str,
                         app_ports: dict[int, int], service_account: str | None = None) -> Process:
    """Bosun's sidecar for one workload, pinned to the proxy CPU (the caller waits for it).
    Without `service_account` it runs as the proxy's default one."""
    argv = bosun_sidecar_argv(bench, log_name, ip, workload, app, app_ports, service_account)
    return Process(log_name, argv, bench.workdir / f"{log_name}.log",
                   cpu=bench.pinning.proxy_cpu, env=_quiet_rust_env()).start()


def bosun_sidecar_argv(bench: Bench, log_name: str, ip: str, workload: str, app: str,
                       app_ports: dict[int, int], service_account: str | None = None) -> list[str]:
    """The command line of Bosun's sidecar for one workload, with its token."""
    xds_port = bench.control_plane_xds_port()
    _, token = bench.token_file(log_name, service_account or "default")
    argv = [*bench.sidecar_command(),
            "--xds-address", f"https://127.0.0.1:{xds_port}",
            "--root-cert", str(bench.root_cert()), "--token-file", str(token),
            "--workload", workload, "--namespace", NAMESPACE, "--ip", ip,
            "--label", f"app={app}", "--admin-port", str(ADMIN_PORT)]
    if service_account is not None:
        argv += ["--service-account", service_account]
    for port, app_port in app_ports.items():
        argv += ["--app-port", f"{port}={app_port}"]
    return argv


def _start_envoy_sidecar(bench: Bench, log_name: str, ip: str, workload: str, app: str,
                         app_ports: dict[int, int], service_account: str | None = None) -> Process:
    """Envoy with the bootstrap `bosun up` writes for the workload, pinned to the proxy CPU
    (the caller waits for it)."""
    xds_port = bench.control_plane_xds_port()
    account = service_account or "default"
    token, token_path = bench.token_file(log_name, account)
    socket = bench.workdir / f"{log_name}.sds.sock"
    # Envoy's certificate comes from the agent beside it, as in `bosun up`; it idles on
    # the client CPU.
    agent = Process(
        f"{log_name}-agent",
        [str(bench.bosun_bin), "agent", "--ca-address", f"https://127.0.0.1:{xds_port}",
         "--root-cert", str(bench.root_cert()), "--token-file", str(token_path),
         "--namespace", NAMESPACE, "--service-account", account, "--sds-socket", str(socket)],
        bench.workdir / f"{log_name}-agent.log", cpu=bench.pinning.client_cpu,
        env=_quiet_rust_env()).start()
    bench.companions.append(agent)
    bootstrap = bench.workdir / f"{log_name}.json"
    bootstrap.write_text(json.dumps(
        envoy_bootstrap(ip, workload, {"app": app}, xds_port, app_ports, account,
                        root_cert=bench.root_cert(), token=token, sds_socket=socket),
        indent=2))
    bootstrap.chmod(0o600)
    return Process(
        log_name,
        [str(bench.envoy_bin), "-c", str(bootstrap),
         # One worker thread: the figure is per core. No hot restart: no shared memory.
         "--concurrency", "1", "--disable-hot-restart",
         "--log-level", "warn", "--drain-time-s", "1"],
        bench.workdir / f"{log_name}.log", cpu=bench.pinning.proxy_cpu).start()


def envoy_version(bench: Bench) -> str:
    # Envoy prints `<path>  version: <sha>/<version>/...`; the path says nothing.
    line = version_line([str(bench.envoy_bin), "--version"])
    return "envoy version: " + line.split("version:", 1)[1].strip() if "version:" in line else line


# What the routes of every service carry (--routing):
#   default     no VirtualService: Istio's defaults (its retry policy on every route)
#   plain       no retry policy, no timeout, no fault: routing alone
#   resilience  a timeout, a retry policy and a fault, none of which fires
ROUTINGS = ("default", "plain", "resilience")

_ROUTING_RULES = {
    "plain": """\
  - retries:
      attempts: 0
""",
    "resilience": """\
  - timeout: 10s
    retries:
      attempts: 3
      perTryTimeout: 5s
      retryOn: 5xx,reset,connect-failure
    fault:
      abort:
        percentage:
          value: 0
        httpStatus: 503
""",
}


def _virtual_service(name: str, routing: str) -> str:
    rules = _ROUTING_RULES.get(routing)
    if rules is None:
        return ""
    return f"""\
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: {name}
  namespace: {NAMESPACE}
spec:
  hosts:
  - {name}.{NAMESPACE}.svc.cluster.local
  http:
{rules}    route:
    - destination:
        host: {name}.{NAMESPACE}.svc.cluster.local
"""


def mesh_folder_yaml(upstream_port: int, routing: str = "default") -> str:
    """The services and their workloads, in Istio's resources, for the control plane, and
    the routing `routing` names for each service.

    The same folder whichever targets run, so that no figure depends on the others chosen.
    """
    services = ["bench"] + [kind.service for kind in (
        BosunTwoSidecars, EnvoyTwoSidecars, BosunTwoSidecarsMtls, EnvoyTwoSidecarsMtls)]
    return "".join(_virtual_service(name, routing) for name in services) \
        + _virtual_service(PLAIN_SERVICE, "plain") \
        + "---\n" + _service_entry(PLAIN_SERVICE, "bench") \
        + "---\n" + _service_entry("bench", "bench") + f"""\
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
""" + _workload_entry("client", BosunProxy.ip, "client") \
        + _workload_entry(BosunPlainProxy.workload, BosunPlainProxy.ip, "client") \
        + _workload_entry(EnvoyProxy.workload, EnvoyProxy.ip, "client") \
        + "".join(_two_sidecar_resources(kind) for kind in (
            BosunTwoSidecars, EnvoyTwoSidecars, BosunTwoSidecarsMtls, EnvoyTwoSidecarsMtls))


def _two_sidecar_resources(kind: type[TwoSidecars]) -> str:
    """The server workload on its own IP with port `http: 8080` (its sidecar's inbound
    listener), the service that selects it, and the client workload; with service
    accounts for the mTLS kinds (a server entry naming one is reached over mTLS)."""
    return ("---\n" + _service_entry(kind.service, kind.service)
            + _workload_entry(kind.server_workload, kind.server_ip, kind.service,
                              {"http": SERVER_PORT}, kind.server_service_account)
            + _workload_entry(kind.client_workload, kind.client_ip, "client",
                              service_account=kind.client_service_account))


def _service_entry(name: str, app: str) -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: {name}
  namespace: {NAMESPACE}
spec:
  hosts:
  - {name}.{NAMESPACE}.svc.cluster.local
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - number: {SERVER_PORT}
    name: http
    protocol: HTTP
  workloadSelector:
    labels:
      app: {app}
"""


def _workload_entry(name: str, address: str, app: str, ports: dict[str, int] | None = None,
                    service_account: str | None = None) -> str:
    port_lines = "".join(f"    {port_name}: {port}\n" for port_name, port in (ports or {}).items())
    return f"""\
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: {name}
  namespace: {NAMESPACE}
spec:
  address: {address}
""" + (f"  ports:\n{port_lines}" if port_lines else "") + f"""\
  labels:
    app: {app}
""" + (f"  serviceAccount: {service_account}\n" if service_account else "")


def envoy_bootstrap(ip: str, workload: str, labels: dict[str, str], xds_port: int,
                    app_ports: dict[int, int], service_account: str, *, root_cert: Path,
                    token: str, sds_socket: Path) -> dict:
    """The bootstrap `bosun up` writes for an Envoy sidecar (crates/xds/src/bootstrap.rs):
    the node identity of docs/design/local-mesh.md, admin on the workload IP, ADS to the
    control plane over TLS with the workload's token, and SDS from the agent's socket.
    `app_ports` (workload port -> app port) is where its inbound listeners forward."""
    def socket_address(address: str, port: int) -> dict:
        return {"socket_address": {"address": address, "port_value": port}}

    def grpc_cluster(name: str, address: dict) -> dict:
        """A static cluster spoken to over HTTP/2 (gRPC)."""
        return {
            "name": name,
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {
                "cluster_name": name,
                "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
            },
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": {"http2_protocol_options": {}},
                },
            },
        }

    xds = grpc_cluster("xds-grpc", socket_address("127.0.0.1", xds_port))
    xds["transport_socket"] = {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": CONTROL_PLANE_NAME,
            "common_tls_context": {
                "alpn_protocols": ["h2"],
                "validation_context": {
                    "trusted_ca": {"filename": str(root_cert)},
                    "match_typed_subject_alt_names": [
                        {"san_type": "DNS", "matcher": {"exact": CONTROL_PLANE_NAME}}],
                },
            },
        },
    }
    return {
        "node": {
            "id": f"sidecar~{ip}~{workload}.{NAMESPACE}~{NAMESPACE}.svc.cluster.local",
            "cluster": f"{workload}.{NAMESPACE}",
            "metadata": {
                "NAMESPACE": NAMESPACE,
                "WORKLOAD_NAME": workload,
                "LABELS": labels,
                "SERVICE_ACCOUNT": service_account,
                "INSTANCE_IPS": ip,
                "BOSUN_OUTBOUND_PORT": str(OUTBOUND_PORT),
                # Strings both ways, as ProxyNode::metadata writes them.
                "BOSUN_APP_PORTS": {str(port): str(app) for port, app in app_ports.items()},
            },
        },
        "admin": {"address": socket_address(ip, ADMIN_PORT)},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{
                    "envoy_grpc": {"cluster_name": "xds-grpc"},
                    "initial_metadata": [{"key": "authorization", "value": f"Bearer {token}"}],
                }],
                "set_node_on_first_message_only": True,
            },
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        # `sds-grpc` is the cluster every TLS context of its listeners and clusters names.
        "static_resources": {
            "clusters": [xds, grpc_cluster("sds-grpc", {"pipe": {"path": str(sds_socket)}})],
        },
    }


def _ensure_proxy_ports_free(ip: str, label: str) -> None:
    for port in (OUTBOUND_PORT, ADMIN_PORT):
        ensure_port_free(ip, port, label)


def _quiet_rust_env() -> dict[str, str]:
    # The proxies all log at warn: none of them logs per request at that level. One worker,
    # as Envoy gets one (--concurrency 1), as `bosun up` runs its sidecars: the proxy's
    # BOSUN_CONCURRENCY (its default is 2, whatever the CPUs), and TOKIO_WORKER_THREADS for
    # the control plane and for proxies built before that setting, which ignore it.
    return {**os.environ, "RUST_LOG": "warn", "BOSUN_CONCURRENCY": "1",
            "TOKIO_WORKER_THREADS": "1"}


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


def _upstream_nginx_config(workdir: Path, port: int, h2c_port: int, app_ips: list[str]) -> str:
    body = "x" * (BODY_BYTES - 1) + "\\n"
    listens = "".join(f"        listen {ip}:{port} backlog=4096;\n"
                      for ip in [UPSTREAM_IP, *app_ips])
    return _nginx_common(workdir, "upstream") + f"""\
http {{
{_nginx_http_common(workdir, "upstream")}
    server {{
{listens}        listen {UPSTREAM_IP}:{h2c_port} http2 backlog=4096;
        location / {{
            default_type application/octet-stream;
            return 200 "{body}";
        }}
        location = {XFCC_PATH} {{
            default_type text/plain;
            return 200 "$http_x_forwarded_client_cert\\n";
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
        listen {ip}:{NGINX_H2C_PORT} http2 backlog=4096;
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
