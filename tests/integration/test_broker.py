"""The local Kafka launcher against a real broker (its own data_dir and ports)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams import broker
from streams.broker import BrokerError

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "kafka"
    yield folder
    broker.stop(data_dir=folder, timeout=10)  # safety net if the test failed midway


def _brokers_of(data_dir: Path) -> list[int]:
    """Pids of every process started with this data_dir's server.properties."""
    props = str(data_dir.resolve() / "server.properties")
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "kafka.Kafka" in args and props in args:
            pids.append(int(entry.name))
    return pids


def _controller_port(data_dir: Path) -> str:
    for line in (data_dir / "server.properties").read_text().splitlines():
        if line.startswith("controller.quorum.voters="):
            return line.rsplit(":", 1)[1]
    raise AssertionError("no controller.quorum.voters")


async def _roundtrip(bootstrap: str) -> None:
    topic = f"jf-broker-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(topic, 3, 1)])
        assert all(error_code == 0 for _, error_code, *_ in response.topic_errors)
        assert topic in await admin.list_topics()
    finally:
        await admin.close()

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        meta = await producer.send_and_wait(topic, b"hello", key=b"k1")
        assert meta.offset == 0
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"{topic}-group",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        record = await consumer.getone()
        assert (record.key, record.value) == (b"k1", b"hello")
        await consumer.commit()  # needs __consumer_offsets with replication factor 1
    finally:
        await consumer.stop()


async def test_start_status_roundtrip_stop(data_dir: Path) -> None:
    port = broker.free_port()
    bootstrap = broker.start(port=port, data_dir=data_dir)
    assert bootstrap == f"127.0.0.1:{port}"

    first = broker.status(data_dir=data_dir)
    assert first.running
    assert first.pid is not None
    assert first.bootstrap == bootstrap
    for name in ("server.properties", "broker.pid", "stdout.log", "data/meta.properties"):
        assert (data_dir / name).exists(), name
    assert (data_dir / "logs" / "server.log").stat().st_size > 0
    assert (data_dir / "stdout.log").read_text() == ""  # the log goes to logs/, not stdout
    controller = _controller_port(data_dir)

    # idempotent: same address, no second JVM
    assert broker.start(port=port, data_dir=data_dir) == bootstrap
    assert broker.status(data_dir=data_dir).pid == first.pid
    assert _brokers_of(data_dir) == [first.pid]

    await _roundtrip(bootstrap)

    assert broker.stop(data_dir=data_dir) is True
    after = broker.status(data_dir=data_dir)
    assert after == broker.BrokerStatus(running=False, pid=None, bootstrap=None)
    assert not (data_dir / "broker.pid").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(first.pid, 0)
    assert _brokers_of(data_dir) == []
    assert broker.stop(data_dir=data_dir) is False

    # a restart reuses the formatted storage and the remembered controller port
    assert broker.start(port=port, data_dir=data_dir) == bootstrap
    assert _controller_port(data_dir) == controller
    second = broker.status(data_dir=data_dir)
    assert second.running
    assert second.pid != first.pid
    assert broker.stop(data_dir=data_dir) is True
    assert _brokers_of(data_dir) == []


def test_port_taken_by_something_else(data_dir: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(BrokerError, match=rf"port {port}\b"):
            broker.start(port=port, data_dir=data_dir, timeout=30)
    assert broker.status(data_dir=data_dir).running is False
    assert _brokers_of(data_dir) == []
