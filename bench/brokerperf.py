"""The broker's own limit on this machine: Kafka's producer and consumer
performance tools (``org.apache.kafka.tools.ProducerPerformance`` and
``ConsumerPerformance``, the kafka-tools jar that ``deploy/kafka/pom.xml``
puts next to the broker's), run from the same jars as the local broker.

The producer writes ``records`` records of the simulated events' mean value
size (no keys: the tool sends none) with ``acks=all`` to a fresh topic with
the benchmark's partition count; the consumer (its own group) reads them
back from the beginning. Both run as one JVM each on the same machine as the
broker, so the numbers are what the broker and a Java client can do here
together: an upper bound for any Kafka client's records/s, not a target.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import resource
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from bench.kafka import create_topics
from bench.watch import CpuWatch
from streams import broker

#: Fewest records either tool handles (a JVM needs a few seconds to warm up).
MIN_RECORDS = 100_000
TOOLS_JAR = f"kafka-tools-{broker.KAFKA_VERSION}.jar"
HEAP = "-Xmx512m"
BATCH_BYTES = 256 * 1024
#: The tools log warnings to stderr; their results go to stdout.
_LOG4J = """\
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
"""

_PRODUCED = re.compile(
    r"(?P<records>\d+) records sent, (?P<per_s>[\d.]+) records/sec "
    r"\((?P<mb_per_s>[\d.]+) MB/sec\), (?P<avg_ms>[\d.]+) ms avg latency, "
    r"(?P<max_ms>[\d.]+) ms max latency, (?P<p50>\d+) ms 50th, (?P<p95>\d+) ms 95th, "
    r"(?P<p99>\d+) ms 99th, (?P<p999>\d+) ms 99.9th"
)


class ToolError(Exception):
    """A performance tool could not run or printed no result."""


def tools_classpath() -> str:
    """The broker's jar folder (fetched once by ``streams.broker``), which must
    hold the kafka-tools jar."""
    libs = broker.ensure_jars(quiet=True)
    if not (libs / TOOLS_JAR).exists():
        raise ToolError(f"{TOOLS_JAR} is not in {libs}: deploy/kafka/pom.xml must list kafka-tools")
    return str(libs / "*")


def parse_producer(out: str) -> dict[str, Any]:
    """ProducerPerformance's final line (the one with percentiles)."""
    found = None
    for match in _PRODUCED.finditer(out):
        found = match
    if found is None:
        raise ToolError(f"ProducerPerformance printed no summary:\n{out[-2000:]}")
    g = found.groupdict()
    return {
        "records": int(g["records"]),
        "records_per_s": round(float(g["per_s"]), 1),
        "mib_per_s": float(g["mb_per_s"]),
        "latency_ms": {
            "mean": float(g["avg_ms"]),
            "p50": int(g["p50"]),
            "p95": int(g["p95"]),
            "p99": int(g["p99"]),
            "p99.9": int(g["p999"]),
            "max": float(g["max_ms"]),
        },
    }


def parse_consumer(out: str) -> dict[str, Any]:
    """ConsumerPerformance's header and values line (comma-separated)."""
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    for i, line in enumerate(lines[:-1]):
        if line.startswith("start.time"):
            names = [x.strip() for x in line.split(",")]
            values = [x.strip() for x in lines[i + 1].split(",")]
            if len(names) != len(values):
                break
            row = dict(zip(names, values, strict=True))
            try:
                return {
                    "records": int(row["data.consumed.in.nMsg"]),
                    # fetch.*: without the group join (rebalance.time.ms)
                    "records_per_s": round(float(row["fetch.nMsg.sec"]), 1),
                    "records_per_s_with_group_join": round(float(row["nMsg.sec"]), 1),
                    "mib_per_s": round(float(row["fetch.MB.sec"]), 2),
                    "group_join_ms": int(row["rebalance.time.ms"]),
                    "fetch_ms": int(row["fetch.time.ms"]),
                }
            except (KeyError, ValueError):
                break
    raise ToolError(f"ConsumerPerformance printed no result:\n{out[-2000:]}")


def _run_tool(
    java: str, classpath: str, log4j: Path, main: str, args: list[str], timeout: float
) -> tuple[str, float, float]:
    """Run one tool to its end: (stdout, its CPU seconds, wall seconds)."""
    cmd = [java, HEAP, f"-Dlog4j.configuration={log4j.as_uri()}", "-cp", classpath, main, *args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    try:
        proc = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ToolError(f"{main} did not finish within {timeout:.0f}s") from exc
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise ToolError(f"{main} exited {proc.returncode}:\n{(proc.stderr or '')[-2000:]}")
    return proc.stdout, cpu, wall


def _cores(watch: CpuWatch, tool_cpu: float, wall: float) -> dict[str, Any]:
    cpu = watch.stop()
    tool = tool_cpu / wall if wall > 0 else None
    cpu["tool"] = round(tool, 2) if tool is not None else None
    other = cpu.get("other_processes")
    if tool is not None and other is not None:
        cpu["other_processes"] = round(max(0.0, other - tool), 2)
    return cpu


async def measure(
    bootstrap: str,
    topic: str,
    partitions: int,
    record_bytes: int,
    records: int,
    workdir: Path,
    broker_pid: int | None,
    timeout: float = 300.0,
) -> dict[str, Any]:
    """Produce ``records`` records to a fresh ``topic``, then consume them back."""
    java = shutil.which("java")
    if java is None:
        raise ToolError("`java` not found on PATH")
    classpath = await asyncio.to_thread(tools_classpath)
    log4j = workdir / "tools-log4j.properties"
    log4j.write_text(_LOG4J)
    await create_topics(bootstrap, [topic], partitions)
    producer_props = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        # batching as the worker's producer (streams.app.PRODUCER_BATCH_BYTES) and the
        # harness's (linger 5 ms); the tool's defaults (16 KiB, no linger) measure the client
        "batch.size": str(BATCH_BYTES),
        "linger.ms": "5",
        "client.id": "jf-bench-perf",
    }
    produce_args = ["--topic", topic, "--num-records", str(records)]
    produce_args += ["--record-size", str(record_bytes), "--throughput", "-1"]
    produce_args += ["--producer-props", *(f"{k}={v}" for k, v in producer_props.items())]

    async def run(tool: str, args: list[str], parse: Any) -> dict[str, Any]:
        """One tool run: its parsed numbers, wall seconds and CPU use."""
        watch = CpuWatch({"broker": broker_pid}).start()
        out, cpu, wall = await asyncio.to_thread(
            _run_tool, java, classpath, log4j, f"org.apache.kafka.tools.{tool}", args, timeout
        )
        return {**parse(out), "seconds": round(wall, 2), "cpu_cores": _cores(watch, cpu, wall)}

    produced = await run("ProducerPerformance", produce_args, parse_producer)
    group = f"jf-bench-perf-{uuid.uuid4().hex[:8]}"
    consume_args = ["--bootstrap-server", bootstrap, "--topic", topic]
    consume_args += ["--messages", str(records), "--group", group, "--timeout", "60000"]
    consumed = await run("ConsumerPerformance", consume_args, parse_consumer)
    with contextlib.suppress(OSError):
        log4j.unlink()
    return {
        "what": "Kafka's own ProducerPerformance / ConsumerPerformance (kafka-tools "
        f"{broker.KAFKA_VERSION}, one JVM each, {HEAP}) against the same broker: "
        f"{records:,} records of {record_bytes} B (the simulated events' mean value size, "
        f"no key), acks=all, {BATCH_BYTES // 1024} KiB batches, linger 5 ms, to a fresh topic "
        f"of {partitions} partitions, then read back "
        "from the beginning by a new consumer group",
        "topic": topic,
        "records": records,
        "record_bytes": record_bytes,
        "producer_props": {k: v for k, v in producer_props.items() if k != "bootstrap.servers"},
        "produce": produced,
        "consume": consumed,
    }
