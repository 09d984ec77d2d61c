"""Child processes of a benchmark run, and what /proc says about them.

Every child runs in its own session (process group) so that stopping it also stops
anything it forked, and nothing outside the harness is ever signalled.
"""

from __future__ import annotations

import http.client
import os
import resource
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


class HarnessError(RuntimeError):
    """A benchmark step failed in a way a person has to look at."""


class Process:
    """A child process, optionally pinned to one CPU with `taskset`, logging to a file."""

    def __init__(self, name: str, argv: list[str], log_path: Path, cpu: int | None = None,
                 env: dict[str, str] | None = None):
        self.name = name
        self.argv = (["taskset", "-c", str(cpu)] if cpu is not None else []) + argv
        self.log_path = log_path
        self.env = env
        self._popen: subprocess.Popen | None = None

    def start(self) -> "Process":
        with open(self.log_path, "wb") as log:
            # taskset execs the command, so the pid we get is the pid we measure.
            self._popen = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env=self.env)
        return self

    @property
    def pid(self) -> int:
        if self._popen is None:
            raise HarnessError(f"{self.name} was never started")
        return self._popen.pid

    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def stop(self, grace_seconds: float = 5.0) -> None:
        if self._popen is None or self._popen.poll() is not None:
            return
        self._signal_group(signal.SIGTERM)
        try:
            self._popen.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self._popen.wait(timeout=grace_seconds)

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self._popen.pid, sig)
        except ProcessLookupError:
            pass

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        if not self.alive():
            raise HarnessError(
                f"{self.name} exited (code {self._popen.returncode if self._popen else '?'}); "
                f"last lines of {self.log_path}:\n{self.log_tail()}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the whole process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        # The command name may contain spaces; the fields we want follow its ')'.
        fields = stat.read().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLOCK_TICKS_PER_SECOND


def status_field_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise HarnessError(f"/proc/{pid}/status has no {field}")


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


class RssSampler:
    """Samples the VmRSS of some processes in the background and keeps each one's maximum,
    and the maximum of its anonymous part (RssAnon: the heap and stacks a process has to
    itself, where the rest is mapped files that every process of one binary shares).

    A path through two sidecars has two proxies: their peaks are kept apart, because the
    figure a sidecar is judged by is its own footprint, not the sum of a chain's.
    """

    def __init__(self, pids: list[int], interval_seconds: float = 0.1):
        self.pids = list(pids)
        self.interval_seconds = interval_seconds
        self.max_kib_by_pid: dict[int, int] = {pid: 0 for pid in self.pids}
        self.max_anon_kib_by_pid: dict[int, int] = {pid: 0 for pid in self.pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def max_kib(self) -> int:
        """The largest peak among the processes (0 when there are none)."""
        return max(self.max_kib_by_pid.values(), default=0)

    @property
    def max_anon_kib(self) -> int:
        """The largest anonymous peak among the processes."""
        return max(self.max_anon_kib_by_pid.values(), default=0)

    def __enter__(self) -> "RssSampler":
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_seconds):
            self._sample()

    def _sample(self) -> None:
        for pid in self.pids:
            try:
                self.max_kib_by_pid[pid] = max(self.max_kib_by_pid[pid],
                                               status_field_kib(pid, "VmRSS"))
                self.max_anon_kib_by_pid[pid] = max(self.max_anon_kib_by_pid[pid],
                                                    status_field_kib(pid, "RssAnon"))
            except (OSError, HarnessError):
                pass  # The process is gone; the caller notices through its own checks.


@dataclass
class CpuWindow:
    """CPU a process used over a wall-clock window."""
    cpu_seconds: float
    wall_seconds: float

    @property
    def cores_busy(self) -> float:
        return self.cpu_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


class CpuMeter:
    """Measures the CPU time some processes use together over a `with` block.

    Summed, because two sidecars on one request path both cost the machine CPU.
    """

    def __init__(self, pids: list[int]):
        self.pids = list(pids)
        self.window = CpuWindow(0.0, 0.0)

    def _total(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids)

    def __enter__(self) -> "CpuMeter":
        self._start_wall = time.monotonic()
        self._start_cpu = self._total()
        return self

    def __exit__(self, *exc) -> None:
        wall = time.monotonic() - self._start_wall
        self.window = CpuWindow(self._total() - self._start_cpu, wall)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def free_port_on_all(hosts: list[str], attempts: int = 20) -> int:
    """A port free on every one of `hosts`: one app listening on several workload IPs
    is reached at the same port on each, as the mesh folder names a single app port."""
    for _ in range(attempts):
        port = free_port(hosts[0])
        if all(_bindable(host, port) for host in hosts[1:]):
            return port
    raise HarnessError(f"found no port free on all of {', '.join(hosts)}")


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True


def ensure_port_free(host: str, port: int, what: str) -> None:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            raise HarnessError(f"{what} needs {host}:{port}, which is taken: {error}") from None


def http_get(host: str, port: int, path: str = "/", host_header: str | None = None,
             timeout: float = 2.0) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        headers = {"Host": host_header} if host_header else {}
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def wait_until(what: str, ready: Callable[[], bool], timeout_seconds: float,
               watched: list[Process] = ()) -> None:
    """Polls `ready` until it holds, failing early if a watched process dies."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        for process in watched:
            process.check_alive()
        try:
            if ready():
                return
        except OSError:
            pass  # Not listening yet.
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.name} ({p.log_path}):\n{p.log_tail()}" for p in watched)
            raise HarnessError(f"timed out after {timeout_seconds:.0f}s waiting for {what}\n{tails}")
        time.sleep(0.05)


def http_ok(host: str, port: int, path: str = "/", host_header: str | None = None) -> Callable[[], bool]:
    return lambda: http_get(host, port, path, host_header)[0] == 200


def machine_busy_seconds() -> float:
    """CPU time all CPUs spent busy (user, nice, system, irq, softirq), in seconds.

    Interrupt time counts: loopback traffic is processed in softirq, and the kernel may
    charge that time both to the interrupted process and to the CPU's softirq figure.
    """
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    user, nice, system, irq, softirq = fields[0], fields[1], fields[2], fields[5], fields[6]
    return (user + nice + system + irq + softirq) / CLOCK_TICKS_PER_SECOND


def children_cpu_seconds() -> float:
    """CPU time of this process's finished children (the load generators)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class ForeignCpuMeter:
    """CPU that processes other than the benchmark's used over a `with` block, in cores.

    Another build or test on the machine takes CPU from the proxy or the load generator
    and makes a run's figures noise; this is how a run notices.
    """

    def __init__(self, own_pids: Callable[[], list[int]]):
        self._own_pids = own_pids
        self.cores = 0.0

    def _own_seconds(self) -> float:
        total = children_cpu_seconds()
        for pid in self._own_pids():
            try:
                total += cpu_seconds(pid)
            except OSError:
                pass
        return total

    def __enter__(self) -> "ForeignCpuMeter":
        self._start = (time.monotonic(), machine_busy_seconds(), self._own_seconds())
        return self

    def __exit__(self, *exc) -> None:
        start_wall, start_busy, start_own = self._start
        wall = time.monotonic() - start_wall
        foreign = (machine_busy_seconds() - start_busy) - (self._own_seconds() - start_own)
        self.cores = max(0.0, foreign / wall) if wall > 0 else 0.0
