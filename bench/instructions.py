#!/usr/bin/env python3
"""What a route's policies cost Bosun's sidecar per request, in instructions.

Timing on a shared 2-vCPU machine moves by 20% from one run to the next; the number of
instructions the proxy executes for a request does not. This runs one Bosun sidecar
under valgrind's callgrind and, on the same process, counts the instructions of N
requests through each of the bench mesh's routings:

  plain       the route carries no timeout, retry policy or fault (bench-plain)
  policies    the route carries what --routing gives the bench service: by default a
              timeout, a retry policy and a fault, none of which fires

Requests are HTTP/1.1 keep-alive GETs of the upstream's 1 KiB body, one at a time. The
counters are zeroed after a warm-up and dumped after each batch, so start-up and config
are not counted.

  bench/instructions.py                       # 2000 requests each, --routing resilience
  bench/instructions.py --requests 5000 --routing default
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.procs import HarnessError, Process, wait_until, http_ok
from harness.targets import (ADMIN_PORT, OUTBOUND_PORT, PLAIN_HOST_HEADER, ROUTINGS,
                             SERVICE_HOST_HEADER, Bench, BosunProxy, Pinning,
                             _quiet_rust_env, bosun_sidecar_argv)
from harness.tools import bosun_binary, ensure_commands

REPO = Path(__file__).resolve().parent.parent


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per routing")
    parser.add_argument("--warmup", type=int, default=200, help="requests before counting")
    parser.add_argument("--routing", choices=[r for r in ROUTINGS if r != "plain"],
                        default="resilience", help="what the measured route carries")
    parser.add_argument("--bosun-bin", help="bosun binary (default: cargo build --release)")
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--output", type=Path,
                        default=REPO / "bench" / "results" / "instructions.json")
    return parser.parse_args()


def send(host_header: str, count: int) -> None:
    conn = http.client.HTTPConnection(BosunProxy.ip, OUTBOUND_PORT, timeout=30)
    for _ in range(count):
        conn.request("GET", "/", headers={"Host": host_header})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise HarnessError(f"{host_header}: answered {response.status}")
    conn.close()


def counted(pid: int, out: Path, label: str) -> int:
    """Dumps callgrind's counters for `pid` (a new file beside `out`) and returns the
    instructions counted since they were last zeroed."""
    before = set(out.parent.glob(out.name + ".*"))
    subprocess.run(["callgrind_control", f"--dump={label}", str(pid)], check=True,
                   capture_output=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        for dump in set(out.parent.glob(out.name + ".*")) - before:
            for line in dump.read_text(errors="replace").splitlines():
                if line.startswith("summary:"):
                    return int(line.split()[1])
        time.sleep(0.2)
    raise HarnessError(f"callgrind wrote no dump for {label}")


def main() -> int:
    args = parse_args()
    ensure_commands(["nginx", "valgrind", "callgrind_control"], install=True)
    bosun_bin = bosun_binary(REPO, args.bosun_bin, build=not args.no_build)
    workdir = Path(tempfile.mkdtemp(prefix="bosun-instructions-"))
    bench = Bench(workdir, Pinning(), bosun_bin, None, routing=args.routing)
    sidecar = None
    try:
        bench.start_upstream([])
        out = workdir / "callgrind.out"
        # Started as the harness starts Bosun's sidecar: ADS over TLS with its token.
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                *bosun_sidecar_argv(bench, "sidecar", BosunProxy.ip, BosunProxy.workload,
                                    "client", {})]
        sidecar = Process("sidecar (callgrind)", argv, workdir / "sidecar.log",
                          env=_quiet_rust_env()).start()
        wait_until("the sidecar under callgrind", http_ok(BosunProxy.ip, ADMIN_PORT, "/ready"),
                   120, [sidecar])
        for host in (PLAIN_HOST_HEADER, SERVICE_HOST_HEADER):
            wait_until(f"a 200 for {host}", http_ok(BosunProxy.ip, OUTBOUND_PORT, "/", host),
                       120, [sidecar])
            send(host, args.warmup)
        pid = sidecar.pid
        subprocess.run(["callgrind_control", "--zero", str(pid)], check=True,
                       capture_output=True)
        results = {}
        for name, host in (("plain", PLAIN_HOST_HEADER), (args.routing, SERVICE_HOST_HEADER)):
            send(host, args.requests)
            total = counted(pid, out, name)
            subprocess.run(["callgrind_control", "--zero", str(pid)], check=True,
                           capture_output=True)
            results[name] = {"requests": args.requests, "instructions": total,
                             "per_request": round(total / args.requests)}
            print(f"{name}: {results[name]['per_request']:,} instructions per request",
                  flush=True)
        plain = results["plain"]["per_request"]
        policies = results[args.routing]["per_request"]
        added = policies - plain
        print(f"{args.routing} adds {added:,} instructions per request "
              f"({100 * added / plain:+.1f}%)", flush=True)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({"routing": args.routing, "results": results,
                                           "added_per_request": added,
                                           "added_percent": round(100 * added / plain, 1)},
                                          indent=2) + "\n")
        print(f"results written to {args.output}")
    finally:
        if sidecar is not None:
            sidecar.stop()
        bench.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
