#!/usr/bin/env python3
"""What access control costs the server's sidecar per request, in instructions.

Timing on a shared 2-vCPU machine moves by 20% from one run to the next; the number of
instructions the proxy executes for a request does not. This runs one Bosun server
sidecar (mutual TLS on its inbound port, as a workload with policies has) under
valgrind's callgrind and, on the same process, counts the instructions of N requests
under each policy set:

  0     no AuthorizationPolicy
  10    10 ALLOW policies of istiod's usual shape (a principal, GET, a path prefix) on
        the workload, each naming its own caller; the request matches only the last
  100   the same with 100

With `--one-caller` every policy names the harness's identity (only their paths differ),
so the sidecar cannot set any aside by who calls: each is evaluated, the worst case.

The requests come from the harness over mTLS with a mesh certificate of its own
(`bench-client`), HTTP/1.1 keep-alive GETs of the upstream's 1 KiB body, one at a time.
Counters are zeroed after each policy set has reached the sidecar and a warm-up, so
start-up and config are not counted.

  bench/authz.py                      # 2000 requests per set
  bench/authz.py --requests 5000 --policies 0,10,100,1000
  bench/authz.py --one-caller
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path

from harness.pki import ClientCertificate
from harness.procs import HarnessError, Process, http_ok, wait_until
from harness.targets import (ADMIN_PORT, NAMESPACE, SERVER_PORT, Bench,
                             BosunTwoSidecarsMtls, Pinning, _quiet_rust_env,
                             bosun_sidecar_argv)
from harness.tools import bosun_binary, ensure_commands
from instructions import counted

REPO = Path(__file__).resolve().parent.parent
SERVER = BosunTwoSidecarsMtls
HOST_HEADER = f"{SERVER.service}:{SERVER_PORT}"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per policy set")
    parser.add_argument("--warmup", type=int, default=200, help="requests before counting")
    parser.add_argument("--policies", default="0,10,100",
                        help="comma-separated policy counts, the first the baseline")
    parser.add_argument("--bosun-bin", help="bosun binary (default: cargo build --release)")
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--output", type=Path,
                        default=REPO / "bench" / "results" / "authz.json")
    parser.add_argument("--one-caller", action="store_true",
                        help="every policy names the harness's identity (the worst case)")
    parser.add_argument("--keep-workdir", action="store_true",
                        help="keep the callgrind dumps (callgrind_annotate reads them)")
    args = parser.parse_args()
    try:
        args.counts = [int(count) for count in args.policies.split(",") if count.strip()]
    except ValueError:
        parser.error(f"--policies {args.policies!r}: comma-separated numbers, e.g. 0,10,100")
    if not args.counts or any(count < 0 for count in args.counts):
        parser.error("--policies needs at least one count, none negative")
    return args


def policies_yaml(count: int, client: ClientCertificate, one_caller: bool) -> str:
    """`count` ALLOW policies on the server; only the last allows the harness's request
    (`/`, and `/set-<count>`, the probe that tells this set has reached the sidecar).
    The others name other callers, or (`one_caller`) the harness on other paths."""
    principal = client.identity.removeprefix("spiffe://")
    documents = []
    for index in range(count):
        last = index == count - 1
        other = f"cluster.local/ns/{NAMESPACE}/sa/other-{index}"
        who = principal if last or one_caller else other
        paths = ["/", f"/set-{count}"] if last else [f"/api/{index}/*"]
        documents.append(f"""\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: bench-{index:04}
  namespace: {NAMESPACE}
spec:
  selector:
    matchLabels:
      app: {SERVER.service}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["{who}"]
    to:
    - operation:
        methods: ["GET"]
        paths: {json.dumps(paths)}
""")
    return "---\n".join(documents)


class MtlsClient:
    """One keep-alive HTTP/1.1 connection over mTLS to the server sidecar's inbound port."""

    def __init__(self, certificate: ClientCertificate):
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                             cafile=str(certificate.root))
        # A SPIFFE certificate names a URI, not a host.
        context.check_hostname = False
        context.load_cert_chain(str(certificate.chain), str(certificate.key))
        self.context = context
        self.connection: http.client.HTTPSConnection | None = None

    def get(self, path: str) -> int:
        if self.connection is None:
            self.connection = http.client.HTTPSConnection(SERVER.server_ip, SERVER_PORT,
                                                          timeout=60, context=self.context)
        try:
            self.connection.request("GET", path, headers={"Host": HOST_HEADER})
            response = self.connection.getresponse()
            response.read()
            return response.status
        except (OSError, http.client.HTTPException):
            self.close()
            raise

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def send(client: MtlsClient, count: int) -> None:
    for _ in range(count):
        status = client.get("/")
        if status != 200:
            raise HarnessError(f"GET / answered {status}")


def took(client: MtlsClient, count: int):
    """Whether the sidecar enforces the policy set of `count`: its probe passes, and a
    path no policy allows is denied (allowed by all when there are none)."""
    def check() -> bool:
        try:
            denied = client.get("/denied")
            if count == 0:
                return denied != 403
            return denied == 403 and client.get(f"/set-{count}") != 403
        except (OSError, http.client.HTTPException):
            return False
    return check


def main() -> int:
    args = parse_args()
    ensure_commands(["nginx", "valgrind", "callgrind_control"], install=True)
    bosun_bin = bosun_binary(REPO, args.bosun_bin, build=not args.no_build)
    workdir = Path(tempfile.mkdtemp(prefix="bosun-authz-"))
    bench = Bench(workdir, Pinning(), bosun_bin, None, mesh_ca=True)
    sidecar = None
    client = None
    try:
        bench.start_upstream([SERVER.server_ip])
        certificate = bench.client_certificate()
        policies = workdir / "mesh" / "authz.yaml"
        out = workdir / "callgrind.out"
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                *bosun_sidecar_argv(bench, "server", SERVER.server_ip, SERVER.server_workload,
                                    SERVER.service, {SERVER_PORT: bench.upstream_port},
                                    SERVER.server_service_account)]
        sidecar = Process("server sidecar (callgrind)", argv, workdir / "sidecar.log",
                          env=_quiet_rust_env()).start()
        wait_until("the sidecar under callgrind",
                   http_ok(SERVER.server_ip, ADMIN_PORT, "/ready"), 180, [sidecar])
        client = MtlsClient(certificate)
        results = {}
        for count in args.counts:
            if count:
                policies.write_text(policies_yaml(count, certificate, args.one_caller))
            else:
                policies.unlink(missing_ok=True)
            wait_until(f"{count} policies on the sidecar", took(client, count), 180, [sidecar])
            send(client, args.warmup)
            subprocess.run(["callgrind_control", "--zero", str(sidecar.pid)], check=True,
                           capture_output=True)
            send(client, args.requests)
            total = counted(sidecar.pid, out, f"policies-{count}")
            results[str(count)] = {"requests": args.requests, "instructions": total,
                                   "per_request": round(total / args.requests)}
            print(f"{count} policies: {results[str(count)]['per_request']:,} "
                  "instructions per request", flush=True)
        baseline = results[str(args.counts[0])]["per_request"]
        for count in args.counts[1:]:
            entry = results[str(count)]
            entry["added_percent"] = round(100 * (entry["per_request"] - baseline) / baseline, 1)
            print(f"{count} policies add {entry['per_request'] - baseline:,} instructions "
                  f"per request ({entry['added_percent']:+.1f}%)", flush=True)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({"baseline": args.counts[0],
                                           "one_caller": args.one_caller,
                                           "results": results}, indent=2) + "\n")
        print(f"results written to {args.output}")
    finally:
        if client is not None:
            client.close()
        if sidecar is not None:
            sidecar.stop()
        bench.stop()
        if args.keep_workdir:
            print(f"callgrind dumps kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
