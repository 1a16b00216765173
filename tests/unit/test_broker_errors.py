"""Launcher errors and the jar cache, without Java, Maven or a network."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest

from streams import broker
from streams.broker import BrokerError
from streams.errors import JourneyflowError

FAKE_JAVA = """#!/bin/sh
echo 'openjdk version "{version}" 2025-04-15' >&2
"""

# Counts its runs in $0.runs and writes the Kafka jar into -DoutputDirectory=...
FAKE_MVN_OK = """#!/bin/sh
echo run >> "$0.runs"
for a in "$@"; do
  case "$a" in -DoutputDirectory=*) out="${a#-DoutputDirectory=}";; esac
done
: > "$out/kafka_2.13-3.9.1.jar"
: > "$out/slf4j-reload4j-1.7.36.jar"
"""

FAKE_MVN_FAIL = """#!/bin/sh
echo "[INFO] Scanning for projects..."
echo "[ERROR] Could not resolve dependencies for project io.journeyflow:x:pom:1"
echo "[ERROR] Network is unreachable"
exit 1
"""


def _script(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def libs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    libs = tmp_path / "cache" / "libs"
    monkeypatch.setenv(broker.LIBS_ENV, str(libs))
    return libs


def test_missing_java_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, libs_dir: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(BrokerError) as info:
        broker.ensure_jars(quiet=True)
    message = str(info.value)
    assert "\n" not in message
    assert "java" in message
    assert "Java 17+" in message
    assert isinstance(info.value, JourneyflowError)
    with pytest.raises(BrokerError, match="Java 17"):
        broker.start(port=broker.free_port(), data_dir=tmp_path / "kafka", timeout=5)
    assert not libs_dir.exists()


def test_old_java_is_rejected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, libs_dir: Path
) -> None:
    bin_dir = tmp_path / "bin"
    _script(bin_dir, "java", FAKE_JAVA.format(version="1.8.0_392"))
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(BrokerError, match=r"Java 8\b.*Java 17\+") as info:
        broker.ensure_jars(quiet=True)
    assert "\n" not in str(info.value)


def test_missing_maven_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, libs_dir: Path
) -> None:
    bin_dir = tmp_path / "bin"
    _script(bin_dir, "java", FAKE_JAVA.format(version="17.0.15"))
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(BrokerError, match="Maven") as info:
        broker.ensure_jars(quiet=True)
    assert "\n" not in str(info.value)
    assert "mvn" in str(info.value)


def test_maven_failure_shows_its_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, libs_dir: Path
) -> None:
    bin_dir = tmp_path / "bin"
    _script(bin_dir, "java", FAKE_JAVA.format(version="21"))
    _script(bin_dir, "mvn", FAKE_MVN_FAIL)
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(BrokerError, match="Network is unreachable") as info:
        broker.ensure_jars(quiet=True)
    assert "exit 1" in str(info.value)
    assert not libs_dir.exists()
    assert [p.name for p in libs_dir.parent.iterdir() if not p.name.endswith(".lock")] == []


def test_jars_are_fetched_once(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    libs_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bin_dir = tmp_path / "bin"
    _script(bin_dir, "java", FAKE_JAVA.format(version="17.0.15"))
    mvn = _script(bin_dir, "mvn", FAKE_MVN_OK)
    monkeypatch.setenv("PATH", str(bin_dir))

    assert broker.ensure_jars() == libs_dir
    assert (libs_dir / "kafka_2.13-3.9.1.jar").exists()
    assert "fetching Apache Kafka 3.9.1 jars with Maven" in capsys.readouterr().err

    assert broker.ensure_jars() == libs_dir
    assert capsys.readouterr().err == ""
    assert Path(f"{mvn}.runs").read_text().splitlines() == ["run"]

    # a changed pom (different stamp) fetches again and replaces the folder
    (libs_dir / broker.STAMP_NAME).write_text("stale\n")
    (libs_dir / "old-1.0.jar").touch()
    assert broker.ensure_jars(quiet=True) == libs_dir
    assert not (libs_dir / "old-1.0.jar").exists()
    assert len(Path(f"{mvn}.runs").read_text().splitlines()) == 2


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('java version "1.8.0_392"', 8),
        ('openjdk version "21" 2023-09-19', 21),
        ("garbage", None),
    ],
)
def test_java_major(output: str, major: int | None) -> None:
    assert broker._java_major(output) == major


def test_free_port_is_bindable() -> None:
    port = broker.free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_status_of_empty_dir(tmp_path: Path) -> None:
    assert broker.status(data_dir=tmp_path) == broker.BrokerStatus(
        running=False, pid=None, bootstrap=None
    )
    assert broker.stop(data_dir=tmp_path / "missing") is False


def test_stale_pid_file_is_not_running(tmp_path: Path) -> None:
    # pid 1 exists but is not a Kafka broker of this data_dir
    (tmp_path / "broker.pid").write_text("1\n")
    assert broker.status(data_dir=tmp_path).running is False
    assert broker.stop(data_dir=tmp_path) is False
    assert not (tmp_path / "broker.pid").exists()


def test_kafka_version_matches_pom() -> None:
    pom = broker.POM.read_text()
    assert f"<kafka.version>{broker.KAFKA_VERSION}</kafka.version>" in pom
    assert broker.LOG4J_CONFIG.is_file()
