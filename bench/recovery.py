"""How long a worker takes to recover its tables, on a real Kafka broker.

``python -m bench.recovery`` starts a private broker (``streams.broker``) and,
for each size N (customers in state):

1. Creates a fresh namespace (unique ``JOURNEYFLOW_TOPIC_NAMESPACE`` and
   ``JOURNEYFLOW_APP_ID``, ``JOURNEYFLOW_PARTITIONS=8``; topics through
   ``streams.admin.ensure_topics``) and the journey table's changelog
   ``<app_id>-journeys-changelog`` (8 partitions, ``cleanup.policy=compact``).
2. Writes N journeys straight into that changelog, as the worker's journeys
   table holds them (``journey.table_records``: the record, key = customer
   id bytes, after the pages of its window, keys of their own; the decision
   fields, another table's, left out), partition = the one the worker
   would use. The batch engine (``streams.tables.KafkaSink.write``) writes a
   changed key's changelog record to the partition of the internal-topic
   record being applied; a customer's records travel keyed by its id, so
   that is the partition Kafka's default partitioner (murmur2 of the
   customer id bytes, ``streams.runtime.partition_of``) gives it. This
   stands in for N customers having been processed through the pipeline
   (a compacted changelog: the last record of each key). The states are clones,
   under new customer ids, of journeys made by the real core from simulated
   traffic (``bench.tick.templates``: ``admit`` + ``step``). Only the
   journeys are seeded: a real run's ``aliases`` table (One-ID: a record per
   identifier that was linked or merged, about one per three customers in
   the bench's simulated traffic) and ``timers`` table are left empty, so
   a real N-customer state has somewhat more (small) records to restore.
3. Times real ``python -m streams.cli worker`` processes until
   ``GET /readyz`` answers 200 (tables restored):

   - ``fresh_rocksdb``: an empty local data folder, the default store;
   - ``restart_rocksdb``: the same worker stopped (SIGTERM) and started again
     with its RocksDB folder intact;
   - ``rebalance_join``: a second worker, empty folder, joins while the first
     runs: until both answer 200 and their ``partitions`` split the 8;
   - ``rebalance_leave``: the second gets SIGTERM: until the first owns all 8
     again and answers 200;
   - ``fresh_memory``: ``JOURNEYFLOW_STORE=memory`` (replays the changelog
     at every start), empty folder.

   After each: the worker's VmRSS and VmHWM (/proc), its CPU seconds, its
   data folder's size, and a few sampled customers read back through
   ``GET /v1/customers/...`` (proof the records were restored, not skipped).

Every wait has a timeout; every process started is stopped at the end
(workers by process group, the broker by ``streams.broker.stop``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.partitioner import DefaultPartitioner

from bench.procs import cpu_seconds, machine, versions
from bench.profile import PySpy, find_py_spy, summarise
from bench.tick import clone_id, git_info, renamed, templates
from streams import broker
from streams.admin import ensure_topics
from streams.core.journey import JourneyState, table_records
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = 8
#: Kinds whose customer ids GET /v1/customers takes back unchanged (no hashing/scoping).
PLAIN_KINDS = ("member_id", "device_id", "chatbot_user_id")


def log(msg: str) -> None:
    print(f"[recovery {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Timeout(Exception):
    pass


# ------------------------------------------------------------------ seeding


async def create_changelog(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(
                [
                    NewTopic(
                        name=topic,
                        num_partitions=PARTITIONS,
                        replication_factor=1,
                        topic_configs={"cleanup.policy": "compact"},
                    )
                ]
            )
        for _ in range(150):
            info = (await admin.describe_topics([topic]))[0]
            parts = info.get("partitions") or []
            if len(parts) == PARTITIONS and all(p.get("leader", -1) >= 0 for p in parts):
                return
            await asyncio.sleep(0.2)
        raise Timeout(f"{topic} has no leaders")
    finally:
        await admin.close()


async def seed_changelog(
    bootstrap: str, topic: str, n: int, pool: Sequence[JourneyState]
) -> dict[str, Any]:
    """N journey records into the changelog, each in the partition Faust would use."""
    partitioner = DefaultPartitioner()
    all_parts = list(range(PARTITIONS))
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=20,
        max_batch_size=512 * 1024,
        compression_type=None,
        request_timeout_ms=60_000,
    )
    await producer.start()
    batches: dict[int, Any] = {}
    pending: list[asyncio.Future[Any]] = []
    counts = [0] * PARTITIONS
    key_bytes = value_bytes = 0
    samples: list[str] = []
    t0 = time.perf_counter()
    encode_s = 0.0

    async def flush(partition: int) -> None:
        batch = batches.pop(partition)
        pending.append(await producer.send_batch(batch, topic, partition=partition))
        if len(pending) >= 64:
            await asyncio.gather(*pending)
            pending.clear()

    try:
        for i in range(n):
            template = pool[i % len(pool)]
            e0 = time.perf_counter()
            cid = clone_id(template.customer_id, i)
            records = table_records(renamed(template, cid))
            encode_s += time.perf_counter() - e0
            partition = partitioner(cid.encode(), all_parts, all_parts)
            for key, value in records:
                batch = batches.get(partition)
                if batch is None:
                    batch = batches[partition] = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None) is None:
                    await flush(partition)
                    batch = batches[partition] = producer.create_batch()
                    assert batch.append(key=key, value=value, timestamp=None) is not None
                counts[partition] += 1
                key_bytes += len(key)
                value_bytes += len(value)
            if cid.split(":", 1)[0] in PLAIN_KINDS and len(samples) < 400 and i % 97 == 0:
                samples.append(cid)
            if i and i % 100_000 == 0:
                rate = i / (time.perf_counter() - t0)
                log(f"  produced {i:,}/{n:,} ({rate:,.0f} records/s)")
        for partition in list(batches):
            await flush(partition)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    seconds = time.perf_counter() - t0
    records = sum(counts)
    return {
        "customers": n,
        "records": records,
        "per_partition": counts,
        "key_bytes": key_bytes,
        "value_bytes": value_bytes,
        "value_bytes_mean": round(value_bytes / records, 1) if records else 0,
        "seconds": round(seconds, 1),
        "records_per_s": round(records / seconds) if seconds else None,
        "encode_seconds": round(encode_s, 1),
        "samples": samples,
    }


def changelog_disk_bytes(kafka_dir: Path, topic: str) -> int:
    """Bytes of the topic's log segments on the broker (``*.log``; indexes left out)."""
    total = 0
    for part in (kafka_dir / "data").glob(f"{topic}-*"):
        if part.name.rsplit("-", 1)[0] == topic:
            total += sum(f.stat().st_size for f in part.glob("*.log"))
    return total


# ------------------------------------------------------------------ workers


def http_get(url: str, timeout: float = 3.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, json.loads(body)
        except ValueError:
            return exc.code, None


def proc_status(pid: int) -> dict[str, float]:
    out: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def dir_mib(path: Path) -> float:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(root, name)).st_size
    return round(total / 2**20, 1)


#: Faust log lines worth a timestamp: (name, pattern)
MARKERS = (
    ("restoring", "Restoring state from changelog topics"),
    ("done_reading", "Done reading from changelog topics"),
    ("recovery_complete", "Recovery complete"),
    ("worker_ready", "Ready"),
)
LOG_TIME = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")


class Worker:
    """One ``python -m streams.cli worker`` in its own process group."""

    def __init__(self, name: str, env: dict[str, str], data_dir: Path, log_path: Path) -> None:
        self.name = name
        self.env = env
        self.data_dir = data_dir
        self.log_path = log_path
        self.port = int(env["JOURNEYFLOW_WEB_PORT"])
        self.popen: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.started_wall = 0.0
        self.log_offset = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def start(self) -> None:
        with self.log_path.open("ab") as out:
            out.write(f"\n===== start {datetime.now(UTC).isoformat()} =====\n".encode())
            out.flush()
            self.log_offset = out.tell()
            self.started_wall = time.time()
            self.started_at = time.monotonic()
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker"],
                env=self.env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def readyz(self) -> tuple[int, Any]:
        try:
            return http_get(f"{self.url}/readyz", timeout=2.0)
        except OSError:
            return 0, None

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 60.0) -> float:
        """Signal the process group; seconds until it exited (SIGKILL after ``timeout``)."""
        if self.popen is None or self.popen.poll() is not None:
            return 0.0
        t0 = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log(f"  {self.name} did not exit within {timeout:.0f}s of {sig.name}: SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=30)
        return round(time.monotonic() - t0, 2)

    def markers(self) -> dict[str, float]:
        """Seconds from start to the first Faust log line of each marker (this start)."""
        out: dict[str, float] = {}
        try:
            with self.log_path.open("rb") as f:
                f.seek(self.log_offset)
                text = f.read().decode(errors="replace")
        except OSError:
            return out
        for line in text.splitlines():
            m = LOG_TIME.match(line)
            if not m:
                continue
            for name, pattern in MARKERS:
                if name not in out and pattern in line:
                    whole, _, ms = m.group(1).partition(",")
                    # logging's asctime is local time
                    stamp = time.mktime(time.strptime(whole, "%Y-%m-%d %H:%M:%S")) + int(ms) / 1e3
                    out[name] = round(stamp - self.started_wall, 2)
        return out

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def snapshot(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            **{f"{k.lower()}_mib": v for k, v in proc_status(self.pid).items()},
            "cpu_seconds": cpu_seconds(self.pid),
            "data_dir_mib": dir_mib(self.data_dir),
            "loadavg_1m": round(os.getloadavg()[0], 2),
        }


def wait_for(
    what: str, check: Callable[[], Any], timeout: float, workers: Sequence[Worker]
) -> tuple[float, Any]:
    """Poll ``check`` every 0.25 s; (seconds waited, its truthy value) or Timeout."""
    t0 = time.monotonic()
    next_note = t0 + 30
    while True:
        value = check()
        if value:
            return time.monotonic() - t0, value
        for w in workers:
            if not w.alive():
                raise Timeout(f"{w.name} exited ({w.popen.returncode if w.popen else '?'})")
        now = time.monotonic()
        if now - t0 > timeout:
            raise Timeout(f"{what}: not within {timeout:.0f}s")
        if now >= next_note:
            notes = ", ".join(
                f"{w.name} rss {proc_status(w.pid).get('VmRSS', 0):,.0f} MiB "
                f"cpu {cpu_seconds(w.pid) or 0:.0f}s readyz {w.readyz()[0]}"
                for w in workers
            )
            log(f"  ... {what}: {now - t0:.0f}s ({notes})")
            next_note = now + 30
        time.sleep(0.25)


def ready_with(worker: Worker, partitions: set[int] | None = None) -> Any:
    status, body = worker.readyz()
    if status != 200 or not isinstance(body, dict):
        return None
    owned = set(body.get("partitions") or ())
    if partitions is not None and owned != partitions:
        return None
    return sorted(owned)


def read_back(worker: Worker, samples: Sequence[str], k: int = 12) -> dict[str, int]:
    """GET a few sampled customers; how many came back with their journey."""
    found = missing = errors = 0
    for cid in random.Random(len(samples)).sample(list(samples), min(k, len(samples))):
        url = f"{worker.url}/v1/customers/{urllib.parse.quote(cid, safe=':')}"
        try:
            status, body = http_get(url, timeout=10.0)
        except OSError:
            errors += 1
            continue
        if status == 200 and isinstance(body, dict):
            found += 1
        elif status == 404:
            missing += 1
        else:
            errors += 1
    return {"sampled": min(k, len(samples)), "found": found, "missing": missing, "errors": errors}


class Profiler:
    """py-spy (``bench.profile``) on a worker for ``seconds`` from Faust's
    "Restoring state" log line: where recovery spends its CPU."""

    def __init__(self, worker: Worker, output: Path, seconds: float) -> None:
        self.worker = worker
        self.output = output
        self.seconds = seconds
        self.spy: PySpy | None = None
        self.started = 0.0
        self.done = False

    def poll(self) -> None:
        if self.done:
            return
        if self.spy is None:
            if "restoring" in self.worker.markers():
                exe = find_py_spy()
                if exe is None:
                    self.done = True
                    return
                self.spy = PySpy(exe, self.worker.pid, self.output)
                self.started = time.monotonic()
        elif time.monotonic() - self.started >= self.seconds:
            self.spy.stop()
            self.done = True

    def finish(self) -> dict[str, Any] | None:
        if self.spy is None:
            return None
        written = self.spy.stop()
        self.done = True
        if not written:
            return {"error": self.spy.log_tail()}
        return {
            "seconds": round(min(self.seconds, time.monotonic() - self.started), 1),
            **summarise(self.output, top=20),
        }


# ------------------------------------------------------------------ one size


def namespace_env(bootstrap: str, prefix: str, app_id: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEYFLOW_")}
    env.update(
        JOURNEYFLOW_KAFKA_BOOTSTRAP=bootstrap,
        JOURNEYFLOW_TOPIC_NAMESPACE=prefix,
        JOURNEYFLOW_APP_ID=app_id,
        JOURNEYFLOW_PARTITIONS=str(PARTITIONS),
        JOURNEYFLOW_LOG_LEVEL="info",
        JOURNEYFLOW_PII_KEY="bench-recovery-key",
        JOURNEYFLOW_PII_KEY_ID="b1",
    )
    return env


def run_size(
    n: int,
    bootstrap: str,
    kafka_dir: Path,
    work: Path,
    pool: Sequence[JourneyState],
    timeouts: dict[str, float],
    started: list[Worker],
    profile_seconds: float = 0.0,
) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    prefix, app_id = f"rec{tag}", f"jf-rec-{tag}"
    env = namespace_env(bootstrap, prefix, app_id)
    settings = Settings(
        kafka_bootstrap=bootstrap, topic_namespace=prefix, app_id=app_id, partitions=PARTITIONS
    )
    changelog = f"{app_id}-journeys-changelog"
    result: dict[str, Any] = {"customers": n, "namespace": prefix, "app_id": app_id}
    log(f"N = {n:,}: namespace {prefix}, app id {app_id}")
    asyncio.run(ensure_topics(settings))
    asyncio.run(create_changelog(bootstrap, changelog))
    log(f"  seeding {changelog} with {n:,} journeys")
    seeded = asyncio.run(seed_changelog(bootstrap, changelog, n, pool))
    samples = seeded.pop("samples")
    time.sleep(2.0)
    seeded["on_disk_bytes"] = changelog_disk_bytes(kafka_dir, changelog)
    result["changelog"] = seeded
    records = seeded["records"]
    log(
        f"  seeded in {seeded['seconds']}s ({seeded['records_per_s']:,} records/s), "
        f"{seeded['on_disk_bytes'] / 2**20:,.0f} MiB on the broker's disk"
    )
    all_parts = set(range(PARTITIONS))

    def worker(name: str, store: str) -> Worker:
        port = broker.free_port()
        data_dir = work / f"{tag}-{name}"
        w = Worker(
            name,
            {
                **env,
                "JOURNEYFLOW_WEB_PORT": str(port),
                "JOURNEYFLOW_DATA_DIR": str(data_dir),
                "JOURNEYFLOW_STORE": store,
            },
            data_dir,
            work / f"{tag}-{name}.log",
        )
        started.append(w)
        return w

    def start_until_ready(w: Worker, phase: str, timeout: float) -> dict[str, Any]:
        log(f"  {phase}: starting {w.name} (store {w.env['JOURNEYFLOW_STORE']})")
        w.start()
        prof = None
        if profile_seconds and phase.startswith("fresh_"):
            prof = Profiler(w, work / f"{tag}-{phase}.pyspy.txt", profile_seconds)

        def check() -> Any:
            if prof is not None:
                prof.poll()
            return ready_with(w, all_parts)

        try:
            seconds, owned = wait_for(f"{phase} ready", check, timeout, [w])
        except Timeout as exc:
            log(f"  {phase}: {exc}\n{w.tail()}")
            return {"error": str(exc), **w.snapshot(), "markers": w.markers()}
        finally:
            profile = prof.finish() if prof else None
        marks = w.markers()
        reading = None
        if "restoring" in marks and "done_reading" in marks:
            reading = round(marks["done_reading"] - marks["restoring"], 2)
        out = {
            "ready_seconds": round(seconds, 2),
            "partitions": owned,
            **w.snapshot(),
            "markers": marks,
            "changelog_reading_seconds": reading,
            "changelog_records_per_s": round(records / reading) if reading else None,
            "read_back": read_back(w, samples),
        }
        if profile is not None:
            out["profile"] = profile
        rate = n / seconds if seconds else 0
        log(
            f"  {phase}: ready in {seconds:.1f}s ({rate:,.0f} customers/s overall), "
            f"RSS {out.get('vmrss_mib', 0):,.0f} MiB, peak {out.get('vmhwm_mib', 0):,.0f} MiB, "
            f"cpu {out['cpu_seconds']}s, read back {out['read_back']}"
        )
        return out

    # (a) fresh, rocksdb
    a = worker("a", "rocksdb")
    result["fresh_rocksdb"] = start_until_ready(a, "fresh_rocksdb", timeouts["fresh"])
    if "error" in result["fresh_rocksdb"]:
        a.stop(signal.SIGKILL)
        return result
    result["fresh_rocksdb"]["stop_seconds"] = a.stop()

    # (b) restart with the RocksDB folder intact
    result["restart_rocksdb"] = start_until_ready(a, "restart_rocksdb", timeouts["restart"])
    if "error" in result["restart_rocksdb"]:
        a.stop(signal.SIGKILL)
        return result

    # (c) a second worker joins (empty folder), then leaves
    b = worker("b", "rocksdb")
    log("  rebalance_join: starting b (empty folder) next to a")
    b.start()

    def split() -> Any:
        pa, pb = ready_with(a), ready_with(b)
        if pa is None or pb is None or not pa or not pb:
            return None
        if set(pa) & set(pb) or set(pa) | set(pb) != all_parts:
            return None
        return pa, pb

    try:
        seconds, (pa, pb) = wait_for("rebalance_join", split, timeouts["rebalance"], [a, b])
        join: dict[str, Any] = {
            "both_ready_seconds": round(seconds, 2),
            "a_partitions": pa,
            "b_partitions": pb,
            "a": a.snapshot(),
            "b": {**b.snapshot(), "markers": b.markers()},
            "read_back": read_back(b, samples),
        }
        log(
            f"  rebalance_join: split {pa} / {pb} after {seconds:.1f}s; "
            f"b RSS {join['b'].get('vmrss_mib', 0):,.0f} MiB"
        )
    except Timeout as exc:
        join = {
            "error": str(exc),
            "a": {**a.snapshot(), "readyz": a.readyz()},
            "b": {**b.snapshot(), "readyz": b.readyz()},
        }
        log(f"  rebalance_join: {exc}\n{b.tail()}")
    result["rebalance_join"] = join

    log("  rebalance_leave: SIGTERM to b")
    t0 = time.monotonic()
    b_exit = b.stop()
    try:
        seconds, _ = wait_for(
            "rebalance_leave", lambda: ready_with(a, all_parts), timeouts["rebalance"], [a]
        )
        leave: dict[str, Any] = {
            "a_ready_all_seconds": round(time.monotonic() - t0, 2),
            "b_exit_seconds": b_exit,
            "after_b_exit_seconds": round(seconds, 2),
            "a": a.snapshot(),
            "read_back": read_back(a, samples),
        }
        log(f"  rebalance_leave: a owns all 8 and is ready {leave['a_ready_all_seconds']}s")
    except Timeout as exc:
        leave = {"error": str(exc), "b_exit_seconds": b_exit, "a": a.snapshot()}
        log(f"  rebalance_leave: {exc}\n{a.tail()}")
    result["rebalance_leave"] = leave
    result["restart_rocksdb"]["stop_seconds"] = a.stop()

    # (a') fresh, memory store
    m = worker("m", "memory")
    result["fresh_memory"] = start_until_ready(m, "fresh_memory", timeouts["fresh"])
    result["fresh_memory"]["stop_seconds"] = m.stop(
        signal.SIGTERM if "error" not in result["fresh_memory"] else signal.SIGKILL
    )
    return result


# ------------------------------------------------------------------ report


def fmt_s(value: Any) -> str:
    return f"{value:,.1f}" if isinstance(value, (int, float)) else "–"


def markdown(result: dict[str, Any]) -> str:
    runs = result["runs"]
    sizes = list(runs)
    lines = [
        "## Recovering the tables",
        "",
        f"A real Kafka {result['versions']['kafka']} broker and real `journeyflow worker` "
        f"processes (`{result['command']}`; {result['machine']['cpu_model']}, "
        f"{result['machine']['cores']} cores, {result['machine']['memory_gib']} GiB; "
        f"commit {str(result['git']['commit'])[:7]}"
        f"{' + uncommitted changes' if result['git']['worktree_dirty'] else ''}). "
        "N journeys (clones of core-made journeys under new customer ids; each a record "
        "and the pages of its window, as the worker stores them) were "
        "written straight into `<app>-journeys-changelog`, each in the partition Faust "
        "would have used, standing in for N customers processed through the pipeline; "
        f"{PARTITIONS} partitions. Seconds from starting the process to `GET /readyz` 200 "
        "owning the partitions named; RSS after it (peak in brackets).",
        "",
        "| | " + " | ".join(f"N = {int(n):,}" for n in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]

    def row(label: str, cell: Callable[[dict[str, Any]], str]) -> None:
        cells = []
        for n in sizes:
            try:
                cells.append(cell(runs[n]))
            except (KeyError, TypeError):
                cells.append("–")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    def phase(r: dict[str, Any]) -> str:
        if "error" in r:
            return f"failed: {r['error']}"
        return (
            f"{r['ready_seconds']:,.1f} s, {r.get('vmrss_mib', 0):,.0f} "
            f"({r.get('vmhwm_mib', 0):,.0f}) MiB"
        )

    row(
        "changelog: records / MiB of log segments",
        lambda r: f"{r['changelog']['records']:,} / {r['changelog']['on_disk_bytes'] / 2**20:,.0f}",
    )
    row(
        "changelog: mean value bytes",
        lambda r: f"{r['changelog']['value_bytes_mean']:,.0f}",
    )
    row("(a) fresh worker, RocksDB, empty folder", lambda r: phase(r["fresh_rocksdb"]))
    row(
        "(a) … of which CPU s / RocksDB folder MiB",
        lambda r: (
            f"{r['fresh_rocksdb']['cpu_seconds']:,.0f} / {r['fresh_rocksdb']['data_dir_mib']:,.0f}"
        ),
    )
    row(
        "(a) … of which reading the changelog (Faust log), records/s",
        lambda r: (
            f"{r['fresh_rocksdb']['changelog_reading_seconds']:,.1f} s, "
            f"{r['fresh_rocksdb']['changelog_records_per_s']:,}/s"
        ),
    )
    row("(a) fresh worker, memory store", lambda r: phase(r["fresh_memory"]))
    row(
        "(a) … memory: reading the changelog, records/s",
        lambda r: (
            f"{r['fresh_memory']['changelog_reading_seconds']:,.1f} s, "
            f"{r['fresh_memory']['changelog_records_per_s']:,}/s"
        ),
    )
    row("(b) restart, RocksDB folder intact", lambda r: phase(r["restart_rocksdb"]))
    row(
        "(c) 2nd worker joins: both ready, 4 + 4",
        lambda r: (
            f"{r['rebalance_join']['both_ready_seconds']:,.1f} s, 2nd "
            f"{r['rebalance_join']['b'].get('vmrss_mib', 0):,.0f} MiB"
            if "error" not in r["rebalance_join"]
            else f"failed: {r['rebalance_join']['error']}"
        ),
    )
    row(
        "(c) 2nd worker stops: 1st owns 8, ready",
        lambda r: (
            f"{r['rebalance_leave']['a_ready_all_seconds']:,.1f} s "
            f"(2nd exited in {r['rebalance_leave']['b_exit_seconds']:,.1f} s)"
            if "error" not in r["rebalance_leave"]
            else f"failed: {r['rebalance_leave']['error']}"
        ),
    )
    lines += ["", result.get("interpretation", "")]
    return "\n".join(lines).rstrip() + "\n"


def interpret(result: dict[str, Any]) -> str:
    """The reading of the numbers, from the numbers (and the py-spy run, when given)."""
    runs = result["runs"]
    ns = sorted(runs, key=int)
    big_n = ns[-1]
    big = runs[big_n]
    parts: list[str] = []
    try:
        fresh, mem = big["fresh_rocksdb"], big["fresh_memory"]
        rates = [
            runs[n][k]["changelog_records_per_s"]
            for n in ns
            for k in ("fresh_rocksdb", "fresh_memory")
            if runs[n][k].get("changelog_records_per_s")
        ]
        lo, hi = f"{min(rates) / 1e3:.1f}", f"{max(rates) / 1e3:.1f}"
        parts.append(
            "An empty data folder means replaying the whole changelog, at "
            f"{lo if lo == hi else f'{lo}–{hi}'}k records/s whatever the store: "
            f"{int(big_n):,} customers ({big['changelog']['on_disk_bytes'] / 2**20:,.0f} MiB "
            f"of changelog) took {fresh['ready_seconds'] / 60:.1f} min with RocksDB and "
            f"{mem['ready_seconds'] / 60:.1f} min in memory, and the worker was on CPU for "
            f"{fresh['cpu_seconds']:.0f} of those {fresh['ready_seconds']:.0f} s."
        )
    except (KeyError, TypeError):
        pass
    prof = result.get("profile_run")
    if prof:
        cats = prof["categories_self_pct"]
        loop = cats.get("asyncio event loop", 0)
        faust = cats.get("Faust/mode stream machinery (agents, streams, topics, consumer)", 0)
        faust += cats.get("Faust table (faust/tables)", 0)
        store = cats.get("table store: RocksDB (faust/stores)", 0)
        kafka = cats.get("aiokafka (fetch, parse, produce, commit)", 0)
        parts.append(
            f"py-spy on a fresh RocksDB recovery ({prof['file']}) puts {loop:.0f}% of the "
            f"samples in the asyncio event loop and {faust:.0f}% in Faust's own recovery and "
            f"consumer code, against {kafka:.0f}% in aiokafka and {store:.0f}% in the RocksDB "
            "store. Faust's recovery loop (`Recovery._slurp_changelogs`) handles one record "
            "at a time: an `asyncio.wait_for(queue.get())`, three debug f-strings formatted "
            "whether logged or not, and a recount of every partition's remaining offsets, so "
            "the limit is Python per-record overhead in the worker, not the broker or the "
            "store."
        )
    try:
        restart = sorted(f"{runs[n]['restart_rocksdb']['ready_seconds']:.1f}" for n in ns)
        span = restart[0] if restart[0] == restart[-1] else f"{restart[0]}–{restart[-1]}"
        parts.append(
            f"With its RocksDB folder intact a restart is ready in {span} s at every size "
            "(offsets are kept, "
            "nothing is re-read), so workers belong on persistent volumes; the empty-folder "
            "case is a lost disk or a new machine."
        )
    except (KeyError, TypeError):
        pass
    try:
        join, leave = big["rebalance_join"], big["rebalance_leave"]
        half = int(big_n) // 2
        parts.append(
            f"A second worker joining restores its half ({half:,} customers) at the same "
            f"rate, {join['both_ready_seconds']:.0f} s, while the first worker stays ready "
            "with its other partitions; customers of the moving partitions wait that long. "
            "When it stops (SIGTERM) the first worker owns all 8 again and is ready in "
            f"{leave['a_ready_all_seconds']:.1f} s: it kept those partitions' RocksDB data "
            "and reads only the changelog written since. Standby replicas "
            "(`table_standby_replicas`, 0 here, not measured) keep a warm copy on another "
            "worker for failover; a new, empty worker still replays its share."
        )
    except (KeyError, TypeError):
        pass
    try:
        fresh, mem, restart_b = big["fresh_rocksdb"], big["fresh_memory"], big["restart_rocksdb"]
        per_customer_kib = (mem["vmrss_mib"] - restart_b["vmrss_mib"]) * 1024 / int(big_n)
        # at small N the table is lost in the noise between two processes' RSS
        held = (
            f"about {per_customer_kib:.1f} KiB per customer above an idle worker."
            if per_customer_kib > 0
            else "no more than the difference between two idle workers at this size."
        )
        parts.append(
            f"Memory: after a fresh RocksDB recovery of {int(big_n):,} customers the worker "
            f"held {fresh['vmrss_mib']:,.0f} MiB (peak {fresh['vmhwm_mib']:,.0f}), "
            f"{restart_b['vmrss_mib']:,.0f} MiB after a restart, consistent with freshly "
            "written, unflushed RocksDB memtables (Faust's default write buffer is 64 MiB per "
            "partition store, 8 stores here); the memory store holds the table in the "
            f"process: {mem['vmrss_mib']:,.0f} MiB, {held}"
        )
    except (KeyError, TypeError):
        pass
    load = result["machine"]
    parts.append(
        "The 2 cores were shared with the broker and with other jobs (load average "
        f"{load['loadavg_at_start'][0]:.1f} at start, {load['loadavg_at_end'][0]:.1f} at end), "
        "so wall times are somewhat long; the changelog, just written, was most likely in "
        "the broker's page cache."
    )
    return " ".join(parts)


def render(path: Path, section: Path, profile_json: Path | None) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(path.read_text())
    if profile_json is not None:
        result["profile_run"] = profile_summary(profile_json)
    result["interpretation"] = interpret(result)
    path.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    section.parent.mkdir(parents=True, exist_ok=True)
    section.write_text(markdown(result))
    return result


def profile_summary(path: Path) -> dict[str, Any] | None:
    """The first fresh RocksDB py-spy summary in a ``--profile-seconds`` run's JSON."""
    data = json.loads(path.read_text())
    for n, run in data.get("runs", {}).items():
        prof = run.get("fresh_rocksdb", {}).get("profile")
        if prof and prof.get("samples"):
            return {
                "file": path.name,
                "customers": int(n),
                "seconds": prof.get("seconds"),
                "samples": prof["samples"],
                "categories_self_pct": prof["categories_self_pct"],
            }
    return None


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.recovery", description=__doc__)
    parser.add_argument("--sizes", default="100000,1000000", help="customers, comma separated")
    parser.add_argument("--fresh-timeout", type=float, default=900.0)
    parser.add_argument("--restart-timeout", type=float, default=300.0)
    parser.add_argument("--rebalance-timeout", type=float, default=600.0)
    parser.add_argument("--personas", type=int, default=3000)
    parser.add_argument("--template-events", type=int, default=60_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--work-dir", type=Path, default=None, help="default: a new temp dir")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, data)")
    parser.add_argument(
        "--profile-seconds",
        type=float,
        default=0.0,
        help="py-spy the fresh workers this long once they restore (timings then carry "
        "py-spy's overhead; use a separate run)",
    )
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--section", type=Path, default=ROOT / "bench" / "sections" / "recovery.md")
    parser.add_argument(
        "--profile-json",
        type=Path,
        default=None,
        help="a --profile-seconds run's results JSON to quote in the section",
    )
    parser.add_argument(
        "--render", type=Path, default=None, help="only rewrite the section from this results JSON"
    )
    args = parser.parse_args(argv)
    if args.render is not None:
        print(markdown(render(args.render, args.section, args.profile_json)))
        return
    timeouts = {
        "fresh": args.fresh_timeout,
        "restart": args.restart_timeout,
        "rebalance": args.rebalance_timeout,
    }
    started_at = datetime.now(UTC)
    load0 = os.getloadavg()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="jf-recovery-"))
    work.mkdir(parents=True, exist_ok=True)
    kafka_dir = work / "kafka"
    log(f"work dir {work}")
    settings = Settings()
    log(f"templates: {args.template_events:,} simulated events through admit + step")
    pool = templates(settings, args.personas, args.template_events, args.seed)
    log(f"  {len(pool):,} template journeys")

    workers: list[Worker] = []
    runs: dict[str, Any] = {}
    bootstrap = None
    try:
        log("starting a private Kafka broker")
        t0 = time.monotonic()
        bootstrap = broker.start(port=broker.free_port(), data_dir=kafka_dir, timeout=180)
        log(f"  {bootstrap} in {time.monotonic() - t0:.1f}s")
        for n in (int(x) for x in args.sizes.split(",")):
            try:
                runs[str(n)] = run_size(
                    n, bootstrap, kafka_dir, work, pool, timeouts, workers, args.profile_seconds
                )
            finally:
                for w in workers:
                    w.stop(signal.SIGKILL, timeout=30)
    finally:
        for w in workers:
            w.stop(signal.SIGKILL, timeout=30)
        if bootstrap is not None:
            log("stopping the broker")
            broker.stop(data_dir=kafka_dir)

    result: dict[str, Any] = {
        "schema": "journeyflow.bench.recovery/1",
        "command": " ".join(["python -m bench.recovery", *map(shlex.quote, sys.argv[1:])]),
        "date": started_at.isoformat(timespec="seconds"),
        "git": git_info(),
        "machine": {
            **machine(),
            "loadavg_at_start": list(load0),
            "loadavg_at_end": list(os.getloadavg()),
        },
        "versions": versions(broker.KAFKA_VERSION),
        "config": {
            "profile_seconds": args.profile_seconds,
            "partitions": PARTITIONS,
            "replication_factor": 1,
            "session_timeout_seconds": Settings().session_timeout_seconds,
            "rocksdb_block_cache_mb": Settings().rocksdb_block_cache_mb,
            "standby_replicas": 0,
            "templates": {
                "personas": args.personas,
                "simulated_events": args.template_events,
                "seed": args.seed,
                "journeys": len(pool),
            },
            "timeouts_seconds": timeouts,
            "seeded": "journeys changelog only; the aliases and timers tables' changelogs "
            "start empty",
        },
        "runs": runs,
    }
    if args.profile_json is not None:
        result["profile_run"] = profile_summary(args.profile_json)
    result["interpretation"] = interpret(result)
    out = args.out or ROOT / "bench" / "results" / f"recovery-{started_at:%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    args.section.parent.mkdir(parents=True, exist_ok=True)
    args.section.write_text(markdown(result))
    log(f"wrote {out} and {args.section}")
    if not args.keep and args.work_dir is None:
        shutil.rmtree(work, ignore_errors=True)
    else:
        log(f"kept {work}")
    print(markdown(result))


if __name__ == "__main__":
    main()
