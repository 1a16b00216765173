"""Launcher for a local single-node Apache Kafka broker (KRaft, combined mode).

The broker runs from jars that Maven fetches once (``deploy/kafka/pom.xml``), so
neither Docker nor a Kafka tarball is needed, only Java 17+ and Maven. Used by
``journeyflow kafka start|stop|status`` and by the integration tests.

Layout of a ``data_dir``::

    server.properties   broker config (rewritten on every start; remembers the ports)
    data/               log.dirs (KRaft metadata log and topic data)
    logs/server.log     broker log (reload4j, see deploy/kafka/log4j.properties)
    stdout.log          JVM stdout/stderr
    broker.pid          pid of the running JVM (its own process group)
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import fcntl
import functools
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from streams.errors import JourneyflowError

__all__ = [
    "KAFKA_VERSION",
    "BrokerError",
    "BrokerStatus",
    "ensure_jars",
    "free_port",
    "start",
    "status",
    "stop",
]

KAFKA_VERSION = "3.9.1"
MIN_JAVA = 17

DEPLOY_DIR = Path(__file__).resolve().parents[1] / "deploy" / "kafka"
POM = DEPLOY_DIR / "pom.xml"
LOG4J_CONFIG = DEPLOY_DIR / "log4j.properties"

LIBS_ENV = "JOURNEYFLOW_KAFKA_LIBS_DIR"
STAMP_NAME = ".journeyflow-pom.sha256"
HOST = "127.0.0.1"

PID_FILE = "broker.pid"
PROPERTIES_FILE = "server.properties"
STDOUT_FILE = "stdout.log"
LOCK_FILE = ".broker.lock"

_T = TypeVar("_T")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Popen objects of brokers started by this process, kept so they are reaped (no zombies).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@atexit.register
def _forget_children() -> None:
    """Leave running brokers detached at exit without Popen's "still running" warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        _CHILDREN.clear()


class BrokerError(JourneyflowError):
    """The local broker could not be fetched, started or stopped."""


@dataclass(frozen=True, slots=True)
class BrokerStatus:
    """What ``status`` found in a data_dir."""

    running: bool
    pid: int | None
    bootstrap: str | None


# --------------------------------------------------------------------------- tools


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now (ephemeral range)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_in_use(port: int) -> bool:
    """True when something listens on (or holds) ``port`` on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
    return _port_answers(port)


def _port_answers(port: int, timeout: float = 0.5) -> bool:
    """True when a TCP connect to 127.0.0.1:port succeeds."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def _java() -> str:
    """Path of a ``java`` >= 17 on PATH, else BrokerError saying what to install."""
    java = shutil.which("java")
    if java is None:
        raise BrokerError(
            f"`java` not found on PATH: the local Kafka broker needs Java {MIN_JAVA}+ "
            "(install a JDK/JRE, e.g. `apt-get install openjdk-17-jre-headless`)"
        )
    major = _java_version(os.path.realpath(java))
    if major is None or major < MIN_JAVA:
        found = "an unknown version" if major is None else f"Java {major}"
        raise BrokerError(
            f"`{java}` is {found}: the local Kafka broker needs Java {MIN_JAVA}+ "
            "(install a newer JDK/JRE and put it first on PATH)"
        )
    return java


@functools.lru_cache(maxsize=8)
def _java_version(java: str) -> int | None:
    """Major version of the ``java`` executable at this (resolved) path."""
    try:
        proc = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return _java_major(proc.stderr + proc.stdout)


def _java_major(version_output: str) -> int | None:
    """Major version from ``java -version`` output ("1.8.0_392" -> 8, "17.0.15" -> 17)."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if match is None:
        return None
    major = int(match.group(1))
    if major == 1 and match.group(2) is not None:
        major = int(match.group(2))
    return major


def _mvn() -> str:
    """Path of ``mvn`` on PATH, else BrokerError saying what to install."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError(
            f"`mvn` not found on PATH: fetching the Apache Kafka {KAFKA_VERSION} jars needs "
            "Apache Maven 3.6+ (install it, e.g. `apt-get install maven`)"
        )
    return mvn


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (serialises concurrent launchers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _tail(path: Path, lines: int = 20) -> str:
    """Last ``lines`` lines of a text file ('' when missing)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


# --------------------------------------------------------------------------- jars


def _libs_dir() -> Path:
    override = os.environ.get(LIBS_ENV)
    if override:
        return Path(override).expanduser().resolve()
    return Path.home() / ".cache" / "journeyflow" / f"kafka-{KAFKA_VERSION}" / "libs"


def _pom_hash() -> str:
    try:
        return hashlib.sha256(POM.read_bytes()).hexdigest()
    except OSError as exc:
        raise BrokerError(
            f"cannot read {POM} ({exc}); is the journeyflow checkout complete?"
        ) from exc


def _jars_ready(libs: Path, digest: str) -> bool:
    stamp = libs / STAMP_NAME
    try:
        return stamp.read_text(encoding="utf-8").strip() == digest
    except OSError:
        return False


def ensure_jars(*, quiet: bool = False) -> Path:
    """Return the folder holding every Kafka broker jar, fetching them with Maven once.

    The folder carries a stamp with the pom's sha256; when it matches nothing runs.
    """
    _java()
    libs = _libs_dir()
    digest = _pom_hash()
    if _jars_ready(libs, digest):
        return libs
    with _locked(libs.parent / f".{libs.name}.lock"):
        if _jars_ready(libs, digest):  # another process fetched them meanwhile
            return libs
        mvn = _mvn()
        if not quiet:
            print(
                f"fetching Apache Kafka {KAFKA_VERSION} jars with Maven (first run only)...",
                file=sys.stderr,
                flush=True,
            )
        tmp = Path(tempfile.mkdtemp(prefix=f".{libs.name}-", dir=libs.parent))
        try:
            cmd = [
                mvn,
                "-B",
                "-q",
                "-Dstyle.color=never",
                "-f",
                str(POM),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={tmp}",
                "-DincludeScope=runtime",
            ]
            try:
                proc = subprocess.run(
                    cmd,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    text=True,
                    check=False,
                )
            except OSError as exc:
                raise BrokerError(f"could not run Maven ({exc})") from exc
            if proc.returncode != 0 or not any(tmp.glob(f"kafka_2.13-{KAFKA_VERSION}.jar")):
                output = _ANSI.sub("", proc.stdout or "").strip().splitlines()
                last = "\n".join(output[-15:]) or "(no output)"
                raise BrokerError(
                    f"Maven could not fetch the Kafka {KAFKA_VERSION} jars "
                    f"(exit {proc.returncode}):\n{last}"
                )
            (tmp / STAMP_NAME).write_text(digest + "\n", encoding="utf-8")
            tmp.chmod(0o755)  # mkdtemp makes it 0700
            if libs.exists():  # stale jars from another pom: move aside, then delete
                old = Path(tempfile.mkdtemp(prefix=f".{libs.name}-old-", dir=libs.parent))
                libs.rename(old / libs.name)
                shutil.rmtree(old, ignore_errors=True)
            tmp.rename(libs)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return libs


# --------------------------------------------------------------------------- config


def _read_properties(path: Path) -> dict[str, str]:
    props: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return props
    for line in lines:
        line = line.strip()
        if not line or line.startswith(("#", "!")) or "=" not in line:
            continue
        key, value = line.split("=", 1)
        props[key.strip()] = value.strip()
    return props


def _listener_port(props: dict[str, str], name: str) -> int | None:
    match = re.search(rf"{name}://[^,:]*:(\d+)", props.get("listeners", ""))
    return int(match.group(1)) if match else None


def _bootstrap_of(data_dir: Path) -> str | None:
    port = _listener_port(_read_properties(data_dir / PROPERTIES_FILE), "PLAINTEXT")
    return f"{HOST}:{port}" if port is not None else None


def _server_properties(*, port: int, controller_port: int, data: Path) -> str:
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{HOST}:{controller_port}",
        "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "log.dirs": str(data),
        # one node: everything replicated once
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "10",
        # topics are created explicitly (Faust PartitionsMismatch otherwise)
        "auto.create.topics.enable": "false",
        "delete.topic.enable": "true",
        "group.initial.rebalance.delay.ms": "0",
        "log.segment.bytes": str(64 * 1024 * 1024),
        "log.retention.hours": "168",
        "log.retention.check.interval.ms": "60000",
        # the cleaner's default 128 MiB dedupe buffer is a quarter of a small heap
        "log.cleaner.dedupe.buffer.size": str(32 * 1024 * 1024),
        "num.network.threads": "2",
        "num.io.threads": "4",
    }
    header = "# written by streams/broker.py on every start; edits are overwritten\n"
    return header + "".join(f"{key}={value}\n" for key, value in settings.items())


def _cluster_id() -> str:
    """A random Kafka cluster id (22-char URL-safe base64 of a UUID, not starting '-')."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _jvm_base(java: str, libs: Path, logs: Path) -> list[str]:
    return [
        java,
        f"-Dkafka.logs.dir={logs}",
        f"-Dlog4j.configuration={LOG4J_CONFIG.as_uri()}",
        "-Djava.awt.headless=true",
        "-cp",
        str(libs / "*"),
    ]


def _format_storage(java: str, libs: Path, data_dir: Path) -> None:
    """Format the KRaft storage once (skipped when data/meta.properties exists)."""
    if (data_dir / "data" / "meta.properties").exists():
        return
    cmd = [
        *_jvm_base(java, libs, data_dir / "logs"),
        "-Xmx256m",
        "kafka.tools.StorageTool",
        "format",
        "-t",
        _cluster_id(),
        "-c",
        str(data_dir / PROPERTIES_FILE),
    ]
    proc = subprocess.run(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=data_dir,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise BrokerError(
            f"formatting Kafka storage in {data_dir / 'data'} failed "
            f"(exit {proc.returncode}):\n{_ANSI.sub('', proc.stdout).strip()[-2000:]}"
        )


# --------------------------------------------------------------------------- process


def _read_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / PID_FILE).read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None


def _reap(pid: int) -> None:
    """Collect ``pid`` if it is our exited child, so it does not linger as a zombie."""
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is not None:
            _CHILDREN.pop(pid, None)
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _alive(pid: int, data_dir: Path) -> bool:
    """True when ``pid`` runs and is the broker of ``data_dir`` (guards against pid reuse)."""
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    proc = Path("/proc") / str(pid)
    if proc.is_dir():
        try:
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                return False
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except (OSError, IndexError):
            return False
        return "kafka.Kafka" in cmdline and str(data_dir / PROPERTIES_FILE) in cmdline
    return True  # no /proc (macOS): trust the pid file


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        try:
            pgid = os.getpgid(pid)
        except ProcessLookupError:
            return
        if pgid == pid:  # started with start_new_session: the JVM leads its group
            os.killpg(pgid, sig)
        else:
            os.kill(pid, sig)


def _wait_gone(pid: int, data_dir: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid, data_dir):
            return True
        time.sleep(0.1)
    return not _alive(pid, data_dir)


def _run_async(factory: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run a coroutine to completion, in a helper thread if this thread has a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(factory())
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="journeyflow-broker-probe", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    value: _T = box["value"]
    return value


async def _probe(bootstrap: str, timeout: float) -> bool:
    """True when the broker answers a metadata request listing itself and a controller."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="journeyflow-broker-probe",
        request_timeout_ms=max(1000, int(timeout * 1000)),
    )
    try:
        async with asyncio.timeout(timeout):
            await admin.start()
            cluster = await admin.describe_cluster()
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    return bool(cluster.get("brokers")) and cluster.get("controller_id", -1) != -1


def _answers(port: int, timeout: float = 5.0) -> bool:
    """True when a Kafka broker answers on 127.0.0.1:port."""
    if not _port_answers(port):
        return False
    return _run_async(lambda: _probe(f"{HOST}:{port}", timeout))


def _failure(data_dir: Path, reason: str) -> BrokerError:
    parts = [f"Kafka broker in {data_dir} {reason}"]
    server_log = _tail(data_dir / "logs" / "server.log", 15)
    stdout_log = _tail(data_dir / STDOUT_FILE, 15)
    if server_log:
        parts.append(f"--- {data_dir / 'logs' / 'server.log'} (tail) ---\n{server_log}")
    if stdout_log:
        parts.append(f"--- {data_dir / STDOUT_FILE} (tail) ---\n{stdout_log}")
    return BrokerError("\n".join(parts))


def _wait_ready(pid: int, port: int, data_dir: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not _alive(pid, data_dir):
            raise _failure(data_dir, "exited during startup")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            _kill(pid, data_dir, grace=10.0)
            raise _failure(data_dir, f"did not answer on {HOST}:{port} within {timeout:.0f}s")
        if _answers(port, timeout=min(5.0, max(remaining, 0.5))):
            return
        time.sleep(0.25)


def _kill(pid: int, data_dir: Path, grace: float) -> None:
    """SIGTERM the broker's process group, SIGKILL it after ``grace`` seconds."""
    _signal_group(pid, signal.SIGTERM)
    if not _wait_gone(pid, data_dir, grace):
        _signal_group(pid, signal.SIGKILL)
        _wait_gone(pid, data_dir, 10.0)
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=5.0)
    (data_dir / PID_FILE).unlink(missing_ok=True)


# --------------------------------------------------------------------------- API


def start(
    *,
    port: int = 9092,
    data_dir: Path,
    controller_port: int | None = None,
    timeout: float = 90.0,
    heap_mb: int = 512,
) -> str:
    """Start (or find) the broker of ``data_dir`` and return its bootstrap address.

    Idempotent: when the broker of this data_dir already runs and answers, its
    address is returned and nothing new is started.
    """
    data_dir = Path(data_dir).expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    with _locked(data_dir / LOCK_FILE):
        pid = _read_pid(data_dir)
        if pid is not None:
            if _alive(pid, data_dir):
                bootstrap = _bootstrap_of(data_dir)
                running_port = _listener_port(
                    _read_properties(data_dir / PROPERTIES_FILE), "PLAINTEXT"
                )
                if bootstrap is None or running_port is None:
                    raise BrokerError(f"pid {pid} runs but {data_dir} has no server.properties")
                _wait_ready(pid, running_port, data_dir, timeout)
                return bootstrap
            (data_dir / PID_FILE).unlink(missing_ok=True)

        java = _java()
        libs = ensure_jars()

        props_path = data_dir / PROPERTIES_FILE
        if controller_port is None:
            controller_port = _listener_port(_read_properties(props_path), "CONTROLLER")
            if controller_port is None or controller_port == port:
                controller_port = free_port()
                while controller_port == port:
                    controller_port = free_port()
        if controller_port == port:
            raise BrokerError(f"Kafka port and controller port are both {port}")
        for what, number in (("Kafka", port), ("Kafka controller", controller_port)):
            if _port_in_use(number):
                raise BrokerError(
                    f"cannot start the {what} listener: port {number} on {HOST} "
                    "is already in use by another process"
                )

        data = data_dir / "data"
        logs = data_dir / "logs"
        data.mkdir(exist_ok=True)
        logs.mkdir(exist_ok=True)
        props_path.write_text(
            _server_properties(port=port, controller_port=controller_port, data=data),
            encoding="utf-8",
        )
        _format_storage(java, libs, data_dir)

        cmd = [
            *_jvm_base(java, libs, logs),
            f"-Xmx{heap_mb}m",
            f"-Xms{heap_mb}m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent",
            "-XX:+ExitOnOutOfMemoryError",
            "kafka.Kafka",
            str(props_path),
        ]
        with (data_dir / STDOUT_FILE).open("ab") as out:
            try:
                child = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=data_dir,
                    start_new_session=True,
                    close_fds=True,
                )
            except OSError as exc:
                raise BrokerError(f"could not run {java} ({exc})") from exc
        _CHILDREN[child.pid] = child
        (data_dir / PID_FILE).write_text(f"{child.pid}\n", encoding="utf-8")
        try:
            _wait_ready(child.pid, port, data_dir, timeout)
        except BaseException:
            _kill(child.pid, data_dir, grace=10.0)
            raise
        return f"{HOST}:{port}"


def stop(*, data_dir: Path, timeout: float = 30.0) -> bool:
    """Stop the broker of ``data_dir``; return whether one was running."""
    data_dir = Path(data_dir).expanduser().resolve()
    if not data_dir.is_dir():
        return False
    with _locked(data_dir / LOCK_FILE):
        pid = _read_pid(data_dir)
        if pid is None:
            return False
        if not _alive(pid, data_dir):
            (data_dir / PID_FILE).unlink(missing_ok=True)
            return False
        _kill(pid, data_dir, grace=timeout)
        if _alive(pid, data_dir):
            raise BrokerError(f"Kafka broker pid {pid} survived SIGKILL")
        return True


def status(*, data_dir: Path) -> BrokerStatus:
    """Report whether the broker of ``data_dir`` runs (process check, no network)."""
    data_dir = Path(data_dir).expanduser().resolve()
    pid = _read_pid(data_dir)
    if pid is None or not _alive(pid, data_dir):
        return BrokerStatus(running=False, pid=None, bootstrap=None)
    return BrokerStatus(running=True, pid=pid, bootstrap=_bootstrap_of(data_dir))
