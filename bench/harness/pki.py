"""The mesh's certificates for the mTLS targets, made with the `openssl` command.

The control plane is given Istio's plug-in CA folder (`--ca-dir`): an ECDSA P-256 root
and an intermediate signing certificate under it. The harness signs one more certificate
from that intermediate, a workload certificate of its own, with which it checks the
server sidecar's inbound mTLS and opens the new handshakes it counts.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .procs import HarnessError

TRUST_DOMAIN = "cluster.local"
# Long enough for any run; the workload certificates the CA signs are short-lived anyway.
CA_DAYS = 3650
LEAF_DAYS = 30

# Sections for `openssl req -x509` and `openssl x509 -req`: what each certificate may do.
_OPENSSL_CONFIG = """\
[req]
distinguished_name = subject
prompt = no

[subject]

[root]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[intermediate]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[workload]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth, serverAuth
subjectAltName = URI:${ENV::BENCH_SPIFFE_ID}
authorityKeyIdentifier = keyid
"""


def spiffe_id(namespace: str, service_account: str) -> str:
    return f"spiffe://{TRUST_DOMAIN}/ns/{namespace}/sa/{service_account}"


@dataclass(frozen=True)
class ClientCertificate:
    """A workload certificate the harness presents as a TLS client."""
    identity: str
    # The leaf, then the intermediate: what a sidecar presents, so the peer can reach
    # the root from it.
    chain: Path
    key: Path
    # The root alone: what the server's certificate must chain to.
    root: Path
    # The intermediate and the root: for clients (`openssl s_time`) that send only the
    # leaf of a certificate file and complete the chain from their CA store.
    ca_bundle: Path


class MeshPki:
    """Istio's `cacerts` folder for the control plane, plus the harness's client certificate."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.ca_dir = directory / "cacerts"
        self._config = directory / "openssl.cnf"
        self._client: ClientCertificate | None = None

    def create_ca(self) -> Path:
        """Writes ca-cert.pem, ca-key.pem, root-cert.pem and cert-chain.pem; returns the
        folder to pass as `--ca-dir`."""
        self.ca_dir.mkdir(parents=True, exist_ok=True)
        self._config.write_text(_OPENSSL_CONFIG)
        root_key = self.directory / "root-key.pem"
        root_cert = self.ca_dir / "root-cert.pem"
        ca_key = self.ca_dir / "ca-key.pem"
        ca_cert = self.ca_dir / "ca-cert.pem"
        ca_csr = self.directory / "ca-cert.csr"
        self._ec_key(root_key)
        self._openssl(["req", "-x509", "-new", "-key", str(root_key), "-sha256",
                       "-days", str(CA_DAYS), "-subj", "/O=Bosun bench/CN=Bench root CA",
                       "-extensions", "root", "-out", str(root_cert)])
        self._ec_key(ca_key)
        self._openssl(["req", "-new", "-key", str(ca_key), "-sha256",
                       "-subj", "/O=Bosun bench/CN=Bench intermediate CA", "-out", str(ca_csr)])
        self._sign(ca_csr, root_cert, root_key, "intermediate", CA_DAYS, ca_cert)
        (self.ca_dir / "cert-chain.pem").write_text(ca_cert.read_text() + root_cert.read_text())
        return self.ca_dir

    def client_certificate(self, namespace: str, service_account: str) -> ClientCertificate:
        """A workload certificate for `namespace`/`service_account`, signed by the
        intermediate (made once)."""
        if self._client is not None:
            return self._client
        if not (self.ca_dir / "ca-key.pem").is_file():
            raise HarnessError("the mesh CA was not created before the client certificate")
        identity = spiffe_id(namespace, service_account)
        key = self.directory / "client-key.pem"
        csr = self.directory / "client.csr"
        leaf = self.directory / "client-cert.pem"
        self._ec_key(key)
        self._openssl(["req", "-new", "-key", str(key), "-sha256",
                       "-subj", f"/O=Bosun bench/CN={service_account}", "-out", str(csr)])
        self._sign(csr, self.ca_dir / "ca-cert.pem", self.ca_dir / "ca-key.pem", "workload",
                   LEAF_DAYS, leaf, identity)
        intermediate = (self.ca_dir / "ca-cert.pem").read_text()
        chain = self.directory / "client-chain.pem"
        chain.write_text(leaf.read_text() + intermediate)
        bundle = self.directory / "client-ca-bundle.pem"
        bundle.write_text(intermediate + (self.ca_dir / "root-cert.pem").read_text())
        self._client = ClientCertificate(identity, chain, key, self.ca_dir / "root-cert.pem",
                                         bundle)
        return self._client

    def _ec_key(self, path: Path) -> None:
        # PKCS#8 ("BEGIN PRIVATE KEY"), which every consumer here reads.
        self._openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                       "-out", str(path)], config=False)

    def _sign(self, csr: Path, issuer_cert: Path, issuer_key: Path, section: str, days: int,
              out: Path, identity: str = "") -> None:
        self._openssl(["x509", "-req", "-in", str(csr), "-CA", str(issuer_cert),
                       "-CAkey", str(issuer_key), "-set_serial", _serial(), "-sha256",
                       "-days", str(days), "-extfile", str(self._config),
                       "-extensions", section, "-out", str(out)],
                      config=False, identity=identity)

    def _openssl(self, argv: list[str], config: bool = True, identity: str = "") -> None:
        command = ["openssl", *argv]
        if config:
            command[2:2] = ["-config", str(self._config)]
        # The config names the SAN through the environment, so one file serves any leaf.
        env = {**os.environ, "BENCH_SPIFFE_ID": identity or "spiffe://unused"}
        result = subprocess.run(command, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            raise HarnessError(f"`{' '.join(command)}` failed ({result.returncode}): "
                               f"{result.stderr.strip()}")


def _serial() -> str:
    # Positive, below 2^159: a valid X.509 serial.
    return "0x" + secrets.token_hex(16)
