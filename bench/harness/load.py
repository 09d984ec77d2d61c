"""The load generators: wrk for the highest request rate, h2load for a fixed rate and
for the highest rate over h2c, and `openssl s_time` for new mTLS handshakes.

wrk and the fixed-rate h2load speak HTTP/1.1 over keep-alive connections opened once per
run; the h2c run multiplexes streams over a few connections. s_time opens one connection
after another, each a full handshake, and closes it.
"""

from __future__ import annotations

import math
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .pki import ClientCertificate
from .procs import HarnessError
from .targets import Endpoint


@dataclass
class MaxRateResult:
    requests_per_second: float
    requests: int
    errors: int


@dataclass
class FixedRateResult:
    requests: int
    errors: int
    achieved_rps: float
    latency_us: dict[str, float]  # p50, p90, p99, max


@dataclass
class HandshakeResult:
    handshakes: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.handshakes / self.seconds if self.seconds > 0 else 0.0


def _pinned(cpu: int | None, argv: list[str]) -> list[str]:
    return (["taskset", "-c", str(cpu)] if cpu is not None else []) + argv


def _run_load(argv: list[str], seconds: float) -> subprocess.CompletedProcess:
    # A generator left waiting on connections the server stopped answering never ends.
    grace_seconds = 30
    try:
        return subprocess.run(argv, capture_output=True, text=True,
                              timeout=seconds + grace_seconds)
    except subprocess.TimeoutExpired:
        raise HarnessError(f"`{' '.join(argv)}` did not finish within {grace_seconds}s of its duration") from None


def _run_against(endpoint: Endpoint, argv: list[str], host_header: str, seconds: float,
                  cpu: int | None) -> str:
    """Runs a load generator (`argv` without its target) against `endpoint`, naming the
    service in `host_header` when the endpoint needs one; returns its output."""
    argv = list(argv)
    if endpoint.host_header:
        argv += ["-H", f"{host_header}: {endpoint.host_header}"]
    argv.append(endpoint.url)
    result = _run_load(_pinned(cpu, argv), seconds)
    if result.returncode != 0:
        raise HarnessError(f"{argv[0]} failed ({result.returncode}): {result.stderr or result.stdout}")
    return result.stdout


def run_wrk(endpoint: Endpoint, seconds: float, connections: int, cpu: int | None) -> MaxRateResult:
    """Closed-loop load: every connection sends its next request as soon as the last one ends."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s"]
    return parse_wrk(_run_against(endpoint, argv, "Host", seconds, cpu))


def parse_wrk(output: str) -> MaxRateResult:
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    if not rate or not total:
        raise HarnessError(f"could not read wrk's output:\n{output}")
    errors = 0
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if non_2xx:
        errors += int(non_2xx.group(1))
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if socket_errors:
        errors += sum(int(count) for count in socket_errors.groups())
    return MaxRateResult(float(rate.group(1)), int(total.group(1)), errors)


def run_h2load_max_rate(endpoint: Endpoint, seconds: float, connections: int, streams: int,
                        cpu: int | None) -> MaxRateResult:
    """Closed-loop load over h2c with prior knowledge: `connections` connections with up to
    `streams` requests in flight on each, a new one sent as soon as one completes.

    h2load's one-second warm-up keeps connection set-up (h2's SETTINGS exchange, the
    proxy's first upstream connections) out of the measured window, as wrk's warm-up run
    does for HTTP/1.1.
    """
    argv = ["h2load", "-t1", f"-c{connections}", f"-m{streams}",
            f"-D{max(1, round(seconds))}", "--warm-up-time=1"]
    return parse_h2load(_run_against(endpoint, argv, ":authority", seconds + 1, cpu))


def parse_h2load(output: str) -> MaxRateResult:
    """Rate and failures from h2load's summary. Of the requests done in the window, those
    without a 2xx response are errors (failed streams and other statuses alike), as wrk's
    socket errors and non-2xx count are."""
    rate = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", output)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done", output)
    ok = re.search(r"status codes: (\d+) 2xx", output)
    if not rate or not done or not ok:
        raise HarnessError(f"could not read h2load's output:\n{output}")
    requests = int(done.group(1))
    return MaxRateResult(float(rate.group(1)), requests, max(0, requests - int(ok.group(1))))


def run_h2load_fixed_rate(endpoint: Endpoint, rate: int, seconds: float, clients: int,
                          cpu: int | None, log_file: Path) -> FixedRateResult:
    """Open-loop-ish load at `rate` requests/s spread over `clients` keep-alive connections.

    h2load's --rps paces each connection; with HTTP/1.1 a connection has one request in
    flight, so a response slower than the pacing interval delays the next request
    (coordinated omission). At 1000 rps over 10 connections the interval is 10 ms, far
    above any latency measured here, so the pacing holds.
    """
    if rate % clients:
        raise HarnessError(f"rate {rate} must be a multiple of the {clients} clients")
    argv = ["h2load", "--h1", "-t1", f"-c{clients}", f"--rps={rate // clients}",
            f"-D{max(1, round(seconds))}", f"--log-file={log_file}"]
    # A `host` header would be sent beside h2load's own; `:authority` replaces it.
    _run_against(endpoint, argv, ":authority", seconds, cpu)
    return read_h2load_log(log_file, seconds)


def read_h2load_log(log_file: Path, seconds: float) -> FixedRateResult:
    """Latency percentiles from h2load's per-request log: start µs, status, latency µs."""
    latencies: list[int] = []
    starts: list[int] = []
    errors = 0
    for line in log_file.read_text().splitlines():
        fields = line.split("\t")
        if len(fields) < 3:
            continue
        start_us, status, latency_us = int(fields[0]), int(fields[1]), int(fields[2])
        if status != 200:
            errors += 1
            continue
        starts.append(start_us)
        latencies.append(latency_us)
    if not latencies:
        raise HarnessError(f"h2load logged no successful request in {log_file}")
    latencies.sort()
    span_seconds = (max(starts) - min(starts)) / 1e6 if len(starts) > 1 else seconds
    return FixedRateResult(
        requests=len(latencies),
        errors=errors,
        achieved_rps=len(latencies) / span_seconds if span_seconds > 0 else 0.0,
        latency_us={
            "p50": percentile(latencies, 50),
            "p90": percentile(latencies, 90),
            "p99": percentile(latencies, 99),
            "max": float(latencies[-1]),
        },
    )


def percentile(sorted_values: list[int], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return float(sorted_values[rank - 1])


def run_s_time(endpoint: Endpoint, certificate: ClientCertificate, seconds: float, clients: int,
               cpu: int | None) -> HandshakeResult:
    """New connections, each a full TLS handshake with `certificate` as the client's and
    no session resumption (`-new`), from `clients` s_time processes side by side for
    `seconds`. Each sends nothing after the handshake and closes the connection.

    s_time sends only the leaf of its `-cert` file and builds the rest of the chain from
    its CA store, so that store holds the intermediate beside the root. Its own summary
    gives whole real seconds only: the rate is taken over the processes' wall time.
    """
    argv = ["openssl", "s_time", "-connect", f"{endpoint.host}:{endpoint.port}",
            "-cert", str(certificate.chain), "-key", str(certificate.key),
            "-CAfile", str(certificate.ca_bundle), "-new", "-time", str(max(1, round(seconds)))]
    # Files, not pipes: s_time prints a character per connection, and a full pipe would
    # stall one process while another is read.
    logs = [tempfile.TemporaryFile(mode="w+") for _ in range(clients)]
    started = time.monotonic()
    children = [subprocess.Popen(_pinned(cpu, argv), stdout=log, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL) for log in logs]
    outputs = []
    try:
        for child, log in zip(children, logs):
            child.wait(timeout=seconds + 30)
            log.seek(0)
            output = log.read()
            if child.returncode != 0:
                raise HarnessError(f"openssl s_time failed ({child.returncode}) against "
                                   f"{endpoint.host}:{endpoint.port}: {output[-2000:]}")
            outputs.append(output)
    except subprocess.TimeoutExpired:
        raise HarnessError("openssl s_time did not finish within 30s of its duration") from None
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
        for log in logs:
            log.close()
    wall = time.monotonic() - started
    return HandshakeResult(sum(parse_s_time(output) for output in outputs), wall)


def parse_s_time(output: str) -> int:
    """The connections s_time completed: "<n> connections in <t> real seconds"."""
    done = re.search(r"(\d+) connections in [\d.]+ real seconds", output)
    if not done:
        raise HarnessError(f"could not read openssl s_time's output:\n{output}")
    return int(done.group(1))
