"""Subprocesses the harness starts (worker, baseline), their CPU time, and
the machine and software they ran on."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from importlib import metadata
from pathlib import Path
from typing import IO, Any

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of a process (all its threads), from /proc."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # after the command: state(0) ppid(1) ... utime(11) stime(12)
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


class Proc:
    """A child process in its own session (so stopping it stops its group)."""

    def __init__(
        self,
        name: str,
        cmd: list[str],
        env: dict[str, str],
        log_path: Path,
        *,
        stdout_pipe: bool = False,
    ) -> None:
        self.name = name
        self.log_path = log_path
        with log_path.open("ab") as log:
            stdout: int | IO[bytes] = subprocess.PIPE if stdout_pipe else log
            self.popen = subprocess.Popen(
                cmd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=log,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def cpu(self) -> float | None:
        return cpu_seconds(self.pid) if self.alive() else None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM the process group, SIGKILL it after ``timeout``; the exit code."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=30)
        return self.popen.returncode

    def crash_line(self) -> str | None:
        """The first line of the log reporting a crashed Faust agent or service."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(max(0, log.seek(0, 2) - 256 * 1024))
                tail = log.read().decode(errors="replace")
        except OSError:
            return None
        for line in tail.splitlines():
            if "Crashed reason=" in line:
                return line.strip()[:500]
        return None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def worker_ready(port: int) -> bool:
    try:
        status, _ = http_get(f"http://127.0.0.1:{port}/readyz", timeout=1.0)
    except OSError:
        return False
    return status == 200


def scrape_counters(port: int) -> dict[str, float]:
    """The worker's own event and output counters from ``/metrics`` (cross-check)."""
    try:
        status, body = http_get(f"http://127.0.0.1:{port}/metrics", timeout=5.0)
    except OSError:
        return {}
    if status != 200:
        return {}
    out: dict[str, float] = {}
    for line in body.decode(errors="replace").splitlines():
        if line.startswith(
            (
                "journeyflow_events_total{",
                "journeyflow_outputs_total{",
                "journeyflow_late_events_total",
                "journeyflow_merges_total",
                "journeyflow_batch_seconds_sum",
                "journeyflow_batch_seconds_count",
                "journeyflow_batch_records_sum",
                "journeyflow_latency_seconds_sum",
                "journeyflow_latency_seconds_count",
            )
        ):
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[name] = out.get(name, 0.0) + float(value)
    return out


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": platform.platform(),
    }


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _java_version() -> str | None:
    try:
        proc = subprocess.run(
            ["java", "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "([^"]+)"', proc.stderr + proc.stdout)
    return match.group(1) if match else None


def versions(kafka: str) -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "kafka": kafka,
        "java": _java_version(),
        **{
            dist: _version(dist)
            for dist in (
                "faust-streaming",
                "aiokafka",
                "pydantic",
                "pydantic-core",
                "orjson",
                "river",
                "rocksdict",
                "py-spy",
            )
        },
    }


def git_info(repo: Path) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(
                ["git", *args], cwd=repo, capture_output=True, text=True, timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return proc.stdout if proc.returncode == 0 else None

    commit = (git("rev-parse", "HEAD") or "").strip()
    status = git("status", "--porcelain")
    return {
        "commit": commit or "uncommitted",
        "worktree_dirty": bool(status.strip()) if status is not None else None,
        "changed_files": sorted(line[3:] for line in (status or "").splitlines())[:50],
    }


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cpu_seconds(pid) is None:
            return True
        time.sleep(0.1)
    return False
