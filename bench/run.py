#!/usr/bin/env python3
"""Bosun's proxy side by side with Envoy, HAProxy and nginx on loopback.

Each proxy runs pinned to CPU 0; the load generator and the upstream app (nginx serving
a 1 KiB body) share CPU 1. A target is one proxy on the path, or two sidecars (client
sidecar -> server sidecar -> app, both on CPU 0). For every target, each run measures:

  * the highest request rate (wrk, HTTP/1.1 keep-alive, closed loop),
  * the highest request rate over h2c (h2load, closed loop), where the target speaks it,
  * latency p50/p90/p99 at a fixed 1000 req/s (h2load --rps, per-request log),
  * the proxies' CPU per 1000 req/s over that fixed-rate run (/proc/<pid>/stat, summed),
  * each proxy's peak RSS during it (/proc/<pid>/status VmRSS, sampled every 100 ms),
  * for two sidecars speaking mTLS, new handshakes per second into the server sidecar's
    inbound port (openssl s_time, a client certificate from the mesh CA) and that
    sidecar's CPU meanwhile.

Figures are medians over the runs. Results go to bench/results/latest.json, a chart next
to it, and the table in docs/benchmarks.md. See docs/benchmarks.md for the method.

  bench/run.py                      # every target, 3 runs (about 15 minutes)
  bench/run.py --quick --only direct,bosun,bosun-2hop
  bench/run.py --only direct,bosun-2hop,envoy-2hop,bosun-2hop-mtls,envoy-2hop-mtls
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import shutil
import tempfile
import time
from pathlib import Path

from harness.load import run_h2load_fixed_rate, run_h2load_max_rate, run_s_time, run_wrk
from harness.procs import CpuMeter, ForeignCpuMeter, HarnessError, RssSampler, thread_count
from harness.report import (added_latency, markdown_table, summarize, update_docs,
                            write_chart)
from harness.targets import ROUTINGS, TARGETS, Bench, Endpoint, Pinning, Target
from harness.tools import (bosun_binary, ensure_commands, ensure_matplotlib, envoy_binary,
                           version_line)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO / "bench" / "results" / "latest.json"
DOC = REPO / "docs" / "benchmarks.md"
# More than this share of failed requests means the figures describe failures, not a proxy.
MAX_ERROR_SHARE = 0.01
# A run during which other processes used more CPU than this (in cores) is repeated.
NOISY_FOREIGN_CORES = 0.10


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark Bosun's proxy against Envoy, HAProxy and nginx on loopback.")
    parser.add_argument("--only", default=",".join(TARGETS),
                        help=f"comma-separated targets, in order (default: {','.join(TARGETS)})")
    parser.add_argument("--runs", type=int, default=3, help="runs per target; medians are reported")
    parser.add_argument("--quick", action="store_true",
                        help="one short run per target: a smoke test, not a measurement")
    parser.add_argument("--rate", type=int, default=1000, help="fixed request rate for latency and CPU")
    parser.add_argument("--clients", type=int, default=10, help="connections at the fixed rate")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections at max rate")
    # 4 x 16 keeps 64 requests in flight, as wrk's 64 connections do: the two max-rate
    # figures differ in the downstream protocol only.
    parser.add_argument("--h2c-connections", type=int, default=4,
                        help="h2load connections in the h2c max-rate run")
    parser.add_argument("--h2c-streams", type=int, default=16,
                        help="concurrent streams per connection in the h2c max-rate run")
    parser.add_argument("--no-h2c", action="store_true", help="skip the h2c max-rate run")
    parser.add_argument("--handshake-seconds", type=float, default=10,
                        help="length of the new mTLS handshakes run (mTLS targets)")
    parser.add_argument("--handshake-clients", type=int, default=2,
                        help="openssl s_time processes side by side in the handshakes run")
    parser.add_argument("--routing", choices=ROUTINGS, default="default",
                        help="what every route carries: Istio's defaults (its retry policy), "
                             "plain routing, or a timeout, retries and a fault that never fire")
    parser.add_argument("--warmup-seconds", type=float, default=3)
    parser.add_argument("--max-rate-seconds", type=float, default=10)
    parser.add_argument("--fixed-rate-seconds", type=float, default=15)
    parser.add_argument("--noisy-retries", type=int, default=2,
                        help="repeat a run disturbed by other busy processes up to this often")
    parser.add_argument("--bosun-bin", help="bosun binary (default: cargo build --release)")
    parser.add_argument("--no-build", action="store_true", help="do not run cargo build first")
    parser.add_argument("--no-install", action="store_true",
                        help="print install commands instead of running apt-get / pip")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="results JSON")
    parser.add_argument("--no-docs", action="store_true", help=f"leave {DOC.name} alone")
    parser.add_argument("--no-chart", action="store_true")
    parser.add_argument("--keep-workdir", action="store_true",
                        help="keep generated configs and logs for inspection")
    args = parser.parse_args()
    if args.quick:
        args.runs = 1
        args.noisy_retries = 0
        args.warmup_seconds, args.max_rate_seconds, args.fixed_rate_seconds = 1, 3, 3
        args.handshake_seconds = 2
    args.targets = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in args.targets if name not in TARGETS]
    if unknown or not args.targets:
        parser.error(f"unknown targets {unknown}; choose from {', '.join(TARGETS)}")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.handshake_clients < 1:
        parser.error("--handshake-clients must be at least 1")
    return args


def noise_warning() -> str | None:
    """Other busy processes make the figures noise: say so in the results."""
    builds = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            name = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if name in ("rustc", "cargo", "cc1", "cc1plus"):
            builds.add(name)
    if builds:
        return f"a build was running during the measurement ({', '.join(sorted(builds))})"
    busy = busy_cpu_share(seconds=1.0)
    if busy > 0.15:
        return f"the machine was {busy:.0%} busy just before the measurement"
    return None


def busy_cpu_share(seconds: float) -> float:
    """Share of all CPUs' time spent not idle over the next `seconds` (from /proc/stat)."""
    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields), idle

    total_before, idle_before = sample()
    time.sleep(seconds)
    total_after, idle_after = sample()
    total = total_after - total_before
    return 1 - (idle_after - idle_before) / total if total else 0.0


def measure_once(target: Target, endpoint: Endpoint, args: argparse.Namespace,
                 pinning: Pinning, log_file: Path) -> dict:
    # Every proxy on the path: CPU is summed over them, RSS kept per proxy.
    pids = target.pids
    run_wrk(endpoint, args.warmup_seconds, args.connections, pinning.client_cpu)

    with CpuMeter(pids) as max_rate_cpu:
        max_rate = run_wrk(endpoint, args.max_rate_seconds, args.connections, pinning.client_cpu)
    _check_errors(target, "max rate", max_rate.errors, max_rate.requests)

    # Before the fixed-rate run, so that every run's RSS follows the same load history.
    h2c = measure_h2c_max_rate(target, args, pinning)

    with CpuMeter(pids) as fixed_rate_cpu, RssSampler(pids) as rss:
        fixed = run_h2load_fixed_rate(endpoint, args.rate, args.fixed_rate_seconds,
                                      args.clients, pinning.client_cpu, log_file)
    _check_errors(target, "fixed rate", fixed.errors, fixed.requests + fixed.errors)
    target.check_alive()

    # Last, so that the figures above follow the same load history as without mTLS.
    handshakes = measure_handshakes(target, args, pinning)

    return {
        "max_rps": max_rate.requests_per_second,
        "max_rps_proxy_cores": max_rate_cpu.window.cores_busy if pids else None,
        **h2c,
        "p50_us": fixed.latency_us["p50"],
        "p90_us": fixed.latency_us["p90"],
        "p99_us": fixed.latency_us["p99"],
        "max_us": fixed.latency_us["max"],
        "achieved_rps": fixed.achieved_rps,
        # vCPU-seconds per 1000 requests is vCPU per 1000 req/s.
        "cpu_per_1000rps": (fixed_rate_cpu.window.cpu_seconds * 1000 / fixed.requests
                            if pids else None),
        # The larger proxy's peak: what one sidecar costs. Each proxy's, client first, beside.
        "rss_mib": rss.max_kib / 1024 if pids else None,
        "private_mib": rss.max_anon_kib / 1024 if pids else None,
        "rss_mib_per_proxy": [rss.max_kib_by_pid[pid] / 1024 for pid in pids] if pids else None,
        "threads": sum(thread_count(pid) for pid in pids) if pids else None,
        "errors": max_rate.errors + fixed.errors + (h2c["h2c_errors"] or 0),
        **handshakes,
    }


def measure_handshakes(target: Target, args: argparse.Namespace, pinning: Pinning) -> dict:
    """New mTLS handshakes per second into the server sidecar's inbound port, and that
    sidecar's CPU over the run; None for each when the target has no mTLS."""
    if target.handshake_endpoint is None:
        return {"handshakes_per_second": None, "handshake_proxy_cores": None,
                "handshake_cpu_us": None}
    proxy = target.handshake_proxy
    with CpuMeter([proxy.pid]) as cpu:
        result = run_s_time(target.handshake_endpoint, target.bench.client_certificate(),
                            args.handshake_seconds, args.handshake_clients, pinning.client_cpu)
    target.check_alive()
    if result.handshakes == 0:
        raise HarnessError(f"{target.label}: no mTLS handshake completed")
    return {"handshakes_per_second": result.per_second,
            "handshake_proxy_cores": cpu.window.cores_busy,
            # The server sidecar's CPU time per handshake: its cost whether or not the
            # load generator kept it busy.
            "handshake_cpu_us": cpu.window.cpu_seconds * 1e6 / result.handshakes}


def measure_h2c_max_rate(target: Target, args: argparse.Namespace, pinning: Pinning) -> dict:
    """The h2c max-rate figures, or None for each when the target or the run has no h2c."""
    if args.no_h2c or target.h2c_endpoint is None:
        return {"max_rps_h2c": None, "max_rps_h2c_proxy_cores": None, "h2c_errors": None}
    pids = target.pids
    with CpuMeter(pids) as cpu:
        result = run_h2load_max_rate(target.h2c_endpoint, args.max_rate_seconds,
                                     args.h2c_connections, args.h2c_streams, pinning.client_cpu)
    _check_errors(target, "h2c max rate", result.errors, result.requests)
    return {
        "max_rps_h2c": result.requests_per_second,
        "max_rps_h2c_proxy_cores": cpu.window.cores_busy if pids else None,
        "h2c_errors": result.errors,
    }


def measure_quietly(target: Target, endpoint: Endpoint, args: argparse.Namespace,
                    pinning: Pinning, log_file: Path, own_pids) -> dict:
    """One run, repeated (up to --noisy-retries times) while other processes on the machine
    take CPU during it; keeps the quietest attempt."""
    best = None
    for attempt in range(args.noisy_retries + 1):
        with ForeignCpuMeter(own_pids) as foreign:
            run = measure_once(target, endpoint, args, pinning, log_file)
        run["foreign_cores"] = foreign.cores
        if best is None or run["foreign_cores"] < best["foreign_cores"]:
            best = run
        if foreign.cores <= NOISY_FOREIGN_CORES:
            break
        print(f"{target.label}: other processes used {foreign.cores:.2f} CPU during the run"
              + ("; repeating it" if attempt < args.noisy_retries else ""), flush=True)
    return best


def describe(run: dict, rate: int, proxied: bool) -> str:
    text = f"{run['max_rps']:,.0f} req/s max"
    if run["max_rps_h2c"] is not None:
        text += f" ({run['max_rps_h2c']:,.0f} over h2c)"
    text += f", p50/p99 {run['p50_us']:,.0f}/{run['p99_us']:,.0f} µs at {rate} req/s"
    if proxied:
        each = run["rss_mib_per_proxy"]
        rss = (f"{run['rss_mib']:.1f} MiB RSS" if len(each) == 1 else
               f"RSS {' + '.join(f'{mib:.1f}' for mib in each)} MiB (client, server)")
        text += (f", {run['cpu_per_1000rps']:.3f} vCPU per 1000 req/s, {rss}, "
                 f"{run['max_rps_proxy_cores'] * 100:.0f}% of the proxy core at max rate")
    if run.get("handshakes_per_second") is not None:
        text += (f", {run['handshakes_per_second']:,.0f} new mTLS handshakes/s "
                 f"({run['handshake_proxy_cores'] * 100:.0f}% of the proxy core, "
                 f"{run['handshake_cpu_us']:,.0f} µs of its CPU each)")
    if run["foreign_cores"] > NOISY_FOREIGN_CORES:
        text += f" (disturbed: other processes used {run['foreign_cores']:.2f} CPU)"
    return text


def _check_errors(target: Target, phase: str, errors: int, requests: int) -> None:
    if requests == 0 or errors > MAX_ERROR_SHARE * requests:
        raise HarnessError(f"{target.label}: {errors} of {requests} requests failed at {phase}")


def machine() -> dict:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                            capture_output=True, text=True).stdout.strip()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "commit": commit or None,
    }


def _interrupt(_signum, _frame) -> None:
    raise KeyboardInterrupt


def main() -> int:
    args = parse_args()
    # SIGTERM unwinds like Ctrl-C, so every child is stopped on the way out.
    signal.signal(signal.SIGTERM, _interrupt)
    if os.cpu_count() < 2:
        raise HarnessError("needs at least 2 CPUs: one for the proxy, one for the load")
    pinning = Pinning()

    install = not args.no_install
    commands = ["wrk", "h2load", "nginx", "taskset"]
    for name in args.targets:
        commands += TARGETS[name].required_commands
    ensure_commands(sorted(set(commands)), install)
    mesh_ca = any(TARGETS[name].mtls for name in args.targets)
    # Envoy is configured by Bosun's control plane, so it needs the bosun binary too.
    needs_bosun = any(TARGETS[name].needs_bosun for name in args.targets)
    needs_envoy = any(TARGETS[name].needs_envoy for name in args.targets)
    bosun_bin = bosun_binary(REPO, args.bosun_bin, build=not args.no_build) if needs_bosun else None
    envoy_bin = envoy_binary(install) if needs_envoy else None
    chart = not args.no_chart and ensure_matplotlib(install)

    workdir = Path(tempfile.mkdtemp(prefix="bosun-bench-"))
    bench = Bench(workdir, pinning, bosun_bin, envoy_bin, mesh_ca=mesh_ca, routing=args.routing)
    targets = [TARGETS[name](bench) for name in args.targets]
    runs: dict[str, list[dict]] = {target.name: [] for target in targets}
    versions: dict[str, str] = {}
    busy_before = noise_warning()
    if busy_before:
        print(f"warning: {busy_before}; runs it disturbs are repeated", flush=True)

    def own_pids() -> list[int]:
        return bench.service_pids() + [pid for target in targets for pid in target.pids]

    try:
        bench.start_upstream([ip for target in targets for ip in target.app_ips])
        # Every proxy is started up front and the runs go round the targets in turn, so
        # that a slow drift of the machine spreads over all of them alike. An idle proxy
        # on the proxy CPU costs the measured one nothing.
        endpoints = {}
        for target in targets:
            print(f"{target.label}: starting", flush=True)
            endpoints[target.name] = target.start()
            versions[target.version_label] = target.version()
        for run_index in range(args.runs):
            for target in targets:
                log_file = workdir / f"{target.name}-{run_index}.h2load.tsv"
                run = measure_quietly(target, endpoints[target.name], args, pinning, log_file,
                                      own_pids)
                runs[target.name].append(run)
                print(f"{target.label}: run {run_index + 1}/{args.runs}: "
                      f"{describe(run, args.rate, bool(target.proxies))}", flush=True)
    finally:
        for target in targets:
            target.stop()
        bench.stop()
        if args.keep_workdir:
            print(f"configs and logs kept in {workdir}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    results = {target.name: {"label": target.label, "hops": target.hops,
                             "mtls": target.mtls,
                             "baseline": target.baseline, "runs": runs[target.name],
                             "median": summarize(runs[target.name])} for target in targets}
    disturbed = sum(run["foreign_cores"] > NOISY_FOREIGN_CORES
                    for target_runs in runs.values() for run in target_runs)
    warning = None
    if disturbed:
        warning = (f"{disturbed} run(s) shared the machine with other busy processes "
                   f"(more than {NOISY_FOREIGN_CORES} CPU)")
    added_latency(results)
    meta = machine()
    meta["versions"] = versions
    meta["bosun_profile"] = (bosun_bin.parent.name if bosun_bin else None)
    meta["noise_warning"] = warning
    report = {
        "meta": meta,
        "settings": {
            "runs": args.runs, "quick": args.quick, "rate": args.rate, "clients": args.clients,
            "connections": args.connections, "warmup_seconds": args.warmup_seconds,
            "h2c": not args.no_h2c, "h2c_connections": args.h2c_connections,
            "h2c_streams": args.h2c_streams,
            "max_rate_seconds": args.max_rate_seconds,
            "fixed_rate_seconds": args.fixed_rate_seconds,
            "handshake_seconds": args.handshake_seconds if mesh_ca else None,
            "handshake_clients": args.handshake_clients if mesh_ca else None,
            "body_bytes": 1024, "proxy_cpu": pinning.proxy_cpu, "client_cpu": pinning.client_cpu,
            "routing": args.routing,
        },
        "results": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    table = markdown_table(report)
    print("\n" + table + "\n")
    print(f"results written to {args.output}", flush=True)

    chart_path = args.output.with_suffix(".png")
    drew_chart = chart and write_chart(report, chart_path)
    if drew_chart:
        print(f"chart written to {chart_path}", flush=True)
    if not args.no_docs:
        chart_link = os.path.relpath(chart_path, DOC.parent) if drew_chart else None
        update_docs(DOC, table, chart_link)
        print(f"table updated in {DOC}", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except HarnessError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted; children stopped", file=sys.stderr)
        sys.exit(130)
