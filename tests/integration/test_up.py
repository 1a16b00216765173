"""``journeyflow up``, the main job: whatever stops it, it stops what it started."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Namespace, eventually, http_get

from streams import broker


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # "pid (comm) state ppid ...": comm may hold spaces, so split after it
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def _ready(url: str) -> bool:
    try:
        return http_get(url, timeout=2)[0] == 200
    except OSError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_up_stopped_by_a_signal_stops_its_worker(
    namespace: Namespace, tmp_path: Path, sig: signal.Signals
) -> None:
    port = broker.free_port()
    env = namespace.env(JOURNEYFLOW_DATA_DIR=str(tmp_path / "data"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "up", "--rate", "20", "--web-port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        eventually(
            lambda: _ready(f"http://127.0.0.1:{port}/readyz"),
            timeout=120,
            what="the worker up started is ready",
        )
        [worker] = _children(proc.pid)
        os.kill(proc.pid, sig)  # up alone, as a service manager or `timeout` would
        _, stderr = proc.communicate(timeout=90)
        assert proc.returncode == 0, stderr.decode()
        assert b"stopped" in stderr
        deadline = time.monotonic() + 10
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(worker), "the worker outlived up"
    finally:  # whatever is left of up's process group (it leads its own session)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
