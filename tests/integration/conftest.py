"""Integration fixtures: one real Apache Kafka broker per test session (started
by the project's own launcher), and worker processes started per test.

Every test gets its own topic namespace and app id, so tests share the broker
but never each other's topics, consumer groups or state.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from streams import broker

pytestmark = pytest.mark.integration

WORKER_READY_TIMEOUT = 120.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.path):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real single-node Kafka for the whole session. Never skipped: if it
    cannot start, every integration test errors with the launcher's reason."""
    data_dir = tmp_path_factory.mktemp("kafka")
    try:
        bootstrap = broker.start(port=broker.free_port(), data_dir=data_dir, timeout=120)
    except broker.BrokerError as exc:
        pytest.fail(f"the Kafka broker did not start: {exc}", pytrace=False)
    yield bootstrap
    broker.stop(data_dir=data_dir)


@dataclass
class WorkerProcess:
    """A `journeyflow worker` subprocess and how to reach it."""

    env: dict[str, str]
    data_dir: Path
    web_port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self) -> WorkerProcess:
        self.starts += 1
        log = self.log_path.open("ab")
        log.write(f"\n===== start {self.starts} =====\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = WORKER_READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                status, _ = http_get(f"{self.url}/readyz", timeout=2)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        pytest.fail(f"worker not ready within {timeout}s:\n{self.log_tail()}")

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 60) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def wipe_local_state(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Namespace:
    """Unique topic namespace + app id for one test, and its settings env."""

    bootstrap: str
    prefix: str
    app_id: str
    partitions: int = 4
    workers: list[WorkerProcess] = field(default_factory=list)

    def topic(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    @property
    def changelog(self) -> str:
        return f"{self.app_id}-journeys-changelog"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEYFLOW_")}
        env.update(
            JOURNEYFLOW_KAFKA_BOOTSTRAP=self.bootstrap,
            JOURNEYFLOW_TOPIC_NAMESPACE=self.prefix,
            JOURNEYFLOW_APP_ID=self.app_id,
            JOURNEYFLOW_PARTITIONS=str(self.partitions),
            JOURNEYFLOW_LOG_LEVEL="warning",
            JOURNEYFLOW_PII_KEY="integration-test-key",
            JOURNEYFLOW_PII_KEY_ID="t1",
        )
        env.update(extra)
        return env

    def worker(self, tmp_path: Path, **extra: str) -> WorkerProcess:
        port = broker.free_port()
        data_dir = tmp_path / f"worker-{port}"
        w = WorkerProcess(
            env=self.env(
                JOURNEYFLOW_WEB_PORT=str(port),
                JOURNEYFLOW_DATA_DIR=str(data_dir),
                **extra,
            ),
            data_dir=data_dir,
            web_port=port,
            log_path=tmp_path / f"worker-{port}.log",
        )
        self.workers.append(w)
        return w


@pytest.fixture
def namespace(kafka_bootstrap: str) -> Iterator[Namespace]:
    tag = uuid.uuid4().hex[:8]
    ns = Namespace(bootstrap=kafka_bootstrap, prefix=f"t{tag}", app_id=f"jf-{tag}")
    yield ns
    for w in ns.workers:
        w.stop(signal.SIGKILL)


def _body(raw: bytes, content_type: str) -> Any:
    return json.loads(raw) if "json" in content_type else raw.decode()


def http_get(url: str, timeout: float = 10) -> tuple[int, Any]:
    """GET; JSON bodies come back parsed, others as text."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, _body(resp.read(), resp.headers.get("Content-Type", ""))
    except urllib.error.HTTPError as exc:
        return exc.code, _body(exc.read(), exc.headers.get("Content-Type", ""))


def metric_samples(url: str, *names: str) -> dict[str, float]:
    """A worker's Prometheus samples of the metrics ``names``: the sample's
    name with its labels (``journeyflow_nba_total{result="sent"}``, or the
    bare name of a metric without labels) -> value."""
    status, text = http_get(f"{url}/metrics")
    assert status == 200
    out = {}
    for line in text.splitlines():
        if line.startswith(tuple(f"{name}{end}" for name in names for end in "{ ")):
            sample, value = line.rsplit(" ", 1)
            out[sample] = float(value)
    return out


def http_post(
    url: str, body: bytes, content_type: str = "application/json", timeout: float = 30
) -> tuple[int, Any]:
    req = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def eventually(check: Any, timeout: float = 60.0, interval: float = 0.5, what: Any = "") -> Any:
    """Poll ``check()`` until it returns a truthy value; fail with the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    about = what() if callable(what) else what or check
    pytest.fail(f"timed out after {timeout}s waiting for {about}: last={last!r}")
