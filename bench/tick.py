"""The cost of moving a partition's event-time clock, in process (no Kafka).

``python -m bench.tick`` builds a journey table of N customers (a ``dict`` of
customer id -> ``encode_state`` bytes, the stand-in for the Faust table) and
the due-time index the worker keeps (``streams.timer_index.TimerIndex``, the
very class ``streams/app.py`` uses: a ``PartitionClock`` record plus one
``due:{p}:{bucket}`` list of customer ids per 10 s bucket, here in a second
``dict`` standing in for the ``timers`` table), then times moving the clock.

How the states are made (all through the real core):

- Templates: a seeded ``streams.simulate`` stream goes through
  ``ingest.admit`` + ``engine.step``, the worker's path, giving a few thousand
  realistic journeys (Zipf activity; stage, counters, recent ids, ...).
  Their own pending items are flushed with ``engine.tick`` so that nothing
  sits outside the index.
- The table: N customers are clones of the templates, round robin, each with
  a new customer id of the same kind and length (``model_copy``).
- Reminders: P = ``per_bucket`` x (spread / 10 s) of them (interest-stage
  live viewers, the only ones the rule takes) get one more real
  ``admit`` + ``step``: a ``live.coupon_claim`` that the shipped rule
  ``live_coupon_reminder`` answers with a pending reminder 30 minutes later.
  Claim times are chosen so exactly ``per_bucket`` reminders fall due in each
  bucket of the next ``spread`` (2 h by default). The index entries come from
  the step's ``scheduled`` due times, through ``TimerIndex.add`` as in the
  worker. P is the same for every N, so every tick has the same items
  due whatever the table size.

The clock stays put while the reminders are indexed (it starts just before
the first one is due). In a partition read strictly in event-time order a
30-minute rule has at most 30 minutes of reminders pending ahead of the
clock; 2 hours makes the clock record (which lists the buckets that hold
items) four times longer than that, so it is the costlier case.

A tick is ``TimerIndex.advance`` (``PartitionClock.advance``, one look-up
per due bucket, ``decode_state`` + ``engine.tick`` + ``encode_state`` per due
customer). Its ``emit`` does what the worker does to each output before
handing it to Kafka (stamp ``emitted_at``, ``schemas.codec.encode``) but
sends nothing and awaits no ack.

Then, per N: the median (and min, max) over repeats of moving the clock
within a bucket (nothing completes: the common case), by one bucket with no
item due, by one bucket (k due), by one minute (6 buckets, 6k due) and by
one hour (360 buckets, 360k due), each repeat from the same restored index;
and the naive alternative: scanning every state of the table for due items
(``decode_state`` of each record, as the table stores bytes; and a cheaper
``orjson.loads``-only scan as its lower bound).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import platform
import resource
import shlex
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench import procs
from bench.procs import machine, versions
from schemas.codec import encode
from schemas.outputs import DeadLetter
from streams.broker import KAFKA_VERSION
from streams.config import core_config, ingest_policy
from streams.core.engine import TickResult, step, tick
from streams.core.ingest import Admitted, RecordMeta, admit
from streams.core.journey import JourneyState, decode_state, encode_state
from streams.core.timers import PartitionClock
from streams.settings import Settings
from streams.simulate import SimulationConfig, simulate
from streams.timer_index import EncodedJourneys, TimerIndex, clock_key

ROOT = Path(__file__).resolve().parents[1]
RULE_ID = "live_coupon_reminder"
PARTITION = 0
#: Event time of the first simulated template event (the bench never reads the clock).
SIM_START = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
#: The index is built with its clock here (ms), well after the templates' events.
CLOCK_START_MS = int(datetime(2026, 11, 11, 20, 0, tzinfo=UTC).timestamp() * 1000)


def log(msg: str) -> None:
    print(f"[tick {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ the app's glue


class Shell:
    """The worker's due-time index (``streams.timer_index.TimerIndex``) on two dicts.

    ``journeys`` stands in for the journey table (customer id bytes -> state
    bytes), ``timers`` for the ``timers`` table (clock and due-list records).
    """

    def __init__(self, journeys: dict[bytes, bytes], width_ms: int) -> None:
        self.journeys = journeys
        self.timers: dict[bytes, bytes] = {}
        self.width_ms = width_ms
        self.index = TimerIndex(self.timers, EncodedJourneys(self.journeys), width_ms)
        self.emitted = 0

    def emit(self, result: TickResult) -> None:
        """The worker's per-output work before Kafka: stamp, encode (nothing is sent)."""
        now = datetime.now(UTC)
        for output in result.outputs:
            encode(output.model_copy(update={"emitted_at": now}))
            self.emitted += 1

    async def move_clock(self, partition: int, to_ms: int) -> None:
        self.index.advance(partition, to_ms, self.emit)


# ------------------------------------------------------------------ building states


def templates(settings: Settings, personas: int, events: int, seed: int) -> list[JourneyState]:
    """Realistic journeys: simulated traffic through admit + step (the worker's path)."""
    core = core_config(settings)
    policy = ingest_policy(settings)
    config = SimulationConfig(seed=seed, customers=personas, start=SIM_START)
    states: dict[str, JourneyState] = {}
    for offset, rec in enumerate(itertools.islice(simulate(config), events)):
        admitted = admit(rec.value, RecordMeta("touchpoints", PARTITION, offset, None), policy)
        if isinstance(admitted, DeadLetter):
            continue
        result = step(states.get(admitted.customer_id), admitted, core)
        if result.state is None:
            states.pop(admitted.customer_id, None)
        else:
            states[admitted.customer_id] = result.state
    # fire the simulation's own reminders (the real core), so none sit outside the index
    return [tick(s, CLOCK_START_MS - 1).state if s.pending else s for s in states.values()]


def renamed(state: JourneyState, customer_id: str) -> JourneyState:
    """A clone under a new customer id (the identifier naming it renamed too)."""
    idents = tuple(customer_id if i == state.customer_id else i for i in state.identifiers)
    return state.model_copy(update={"customer_id": customer_id, "identifiers": idents})


def clone_id(template_id: str, n: int) -> str:
    """A new id of the template's kind and about its length: ``kind:…<n>``."""
    kind, _, value = template_id.partition(":")
    tail = f"{n:x}"
    return f"{kind}:{value[: max(1, len(value) - len(tail) - 1)]}~{tail}"


def claim_event(viewer: str, n: int, occurred_ms: int) -> bytes:
    at = datetime.fromtimestamp(occurred_ms / 1000, tz=UTC).isoformat(timespec="milliseconds")
    return orjson.dumps(
        {
            "schema_version": 1,
            "event_id": f"bench-claim-{n}",
            "event_type": "live.coupon_claim",
            "channel": "livestream",
            "occurred_at": at,
            "identities": {"live_viewer_id": viewer},
            "context": {"live_room_id": "room-618-beauty", "campaign_id": "double11"},
            "properties": {"coupon_id": "CP-618-BEAUTY-30"},
        }
    )


@dataclass
class Built:
    shell: Shell
    pending_ids: list[bytes]
    first_bucket: int
    build_seconds: float


def build(
    n: int,
    pool: Sequence[JourneyState],
    settings: Settings,
    per_bucket: int,
    buckets: int,
    seed: int,
) -> Built:
    """N customers in the table; ``per_bucket`` reminders due in each of ``buckets`` buckets."""
    width_ms = settings.timer_resolution_seconds * 1000
    core = core_config(settings)
    policy = ingest_policy(settings)
    delay_ms = next(r.delay_seconds for r in core.rules.rules if r.id == RULE_ID)
    assert delay_ms is not None
    delay_ms *= 1000
    viewers = [
        s for s in pool if s.stage == "interest" and s.customer_id.startswith("live_viewer_id:")
    ]
    others = list(pool)
    pending_n = per_bucket * buckets
    if pending_n > n:
        raise SystemExit(f"{pending_n} reminders do not fit {n} customers: lower --per-bucket")
    journeys: dict[bytes, bytes] = {}
    shell = Shell(journeys, width_ms)
    # the clock: mid-bucket b0 (b0 - 1 done); reminders fall due in buckets b0+1 ..
    b0 = CLOCK_START_MS // width_ms
    clock_ms = b0 * width_ms + width_ms // 2
    shell.timers[clock_key(PARTITION)] = PartitionClock.start(clock_ms, width_ms).to_bytes()
    stride = n // pending_n
    t0 = time.perf_counter()
    pending_ids: list[bytes] = []
    jitter = 0
    for i in range(n):
        if i % stride == 0 and len(pending_ids) < pending_n:
            j = len(pending_ids)
            template = viewers[j % len(viewers)]
            viewer = f"douyin:{j:08d}"
            cid = f"live_viewer_id:{viewer}"
            state = renamed(template, cid)
            # exactly per_bucket due in bucket b0 + 1 + j // per_bucket
            jitter = (jitter * 7919 + 12345 + seed) % width_ms
            due_ms = (b0 + 1 + j // per_bucket) * width_ms + jitter
            raw = claim_event(viewer, j, due_ms - delay_ms)
            meta = RecordMeta("touchpoints", PARTITION, 10**9 + j, None)
            admitted = admit(raw, meta, policy)
            assert isinstance(admitted, Admitted) and admitted.customer_id == cid, admitted
            result = step(state, admitted, core)
            assert result.state is not None and result.scheduled == (due_ms,), result
            journeys[cid.encode()] = encode_state(result.state)
            shell.index.add(PARTITION, cid, result.scheduled, admitted.occurred_ms)
            pending_ids.append(cid.encode())
        else:
            template = others[i % len(others)]
            cid = clone_id(template.customer_id, i)
            journeys[cid.encode()] = encode_state(renamed(template, cid))
        if i and i % 200_000 == 0:
            log(f"  built {i:,}/{n:,} states ({time.perf_counter() - t0:.0f}s)")
    build_s = time.perf_counter() - t0
    assert len(journeys) == n, (len(journeys), n)
    assert len(pending_ids) == pending_n
    return Built(shell, pending_ids, b0, build_s)


# ------------------------------------------------------------------ measuring


def percentile(sorted_values: Sequence[int], q: float) -> int:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def sizes_of(journeys: dict[bytes, bytes]) -> dict[str, Any]:
    sizes = sorted(len(v) for v in journeys.values())
    return {
        "customers": len(sizes),
        "min": sizes[0],
        "median": int(statistics.median(sizes)),
        "p99": percentile(sizes, 0.99),
        "max": sizes[-1],
        "mean": round(sum(sizes) / len(sizes), 1),
        "total_mb": round(sum(sizes) / 1e6, 1),
    }


def summary(seconds: list[float], items: int, cpu: list[float]) -> dict[str, Any]:
    """Wall-clock median (min, max) and the median CPU time of this process."""
    med = statistics.median(seconds)
    return {
        "repeats": len(seconds),
        "median_ms": round(med * 1e3, 4),
        "min_ms": round(min(seconds) * 1e3, 4),
        "max_ms": round(max(seconds) * 1e3, 4),
        "median_cpu_ms": round(statistics.median(cpu) * 1e3, 4),
        "due_items": items,
        "us_per_due_item": round(med * 1e6 / items, 2) if items else None,
        "cpu_us_per_due_item": round(statistics.median(cpu) * 1e6 / items, 2) if items else None,
    }


async def measure_ticks(built: Built, repeats: int, per_bucket: int) -> dict[str, Any]:
    shell = built.shell
    width = shell.width_ms
    b0 = built.first_bucket
    saved_timers = dict(shell.timers)
    saved_states = {k: shell.journeys[k] for k in built.pending_ids}

    def restore() -> None:
        shell.timers.clear()
        shell.timers.update(saved_timers)
        shell.journeys.update(saved_states)

    mid_b0 = b0 * width + width // 2
    end_b0 = (b0 + 1) * width  # clock here: bucket b0 done, nothing due yet

    # (label, untimed start, timed target, buckets completed, items expected)
    cases: list[tuple[str, int | None, int, int, int]] = [
        ("within a bucket (+1 s, no bucket completes)", None, mid_b0 + 1000, 0, 0),
        ("+1 bucket (10 s), bucket empty", None, end_b0, 1, 0),
        ("+1 bucket (10 s)", end_b0, end_b0 + width, 1, per_bucket),
        ("+1 minute (6 buckets)", end_b0, end_b0 + 6 * width, 6, 6 * per_bucket),
        ("+1 hour jump (360 buckets)", end_b0, end_b0 + 360 * width, 360, 360 * per_bucket),
    ]
    out: dict[str, Any] = {}
    for label, start, target, n_buckets, expect in cases:
        times: list[float] = []
        cpu: list[float] = []
        reps = repeats if expect < 1000 else max(5, repeats // 3)
        gc.collect()  # once per case: a collection right before a timed move cools the caches
        for _ in range(reps):
            restore()
            if start is not None:
                await shell.move_clock(PARTITION, start)
            before = shell.emitted
            c0, t0 = time.process_time(), time.perf_counter()
            await shell.move_clock(PARTITION, target)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            fired = shell.emitted - before
            assert fired == expect, (label, fired, expect)
        out[label] = {"buckets_completed": n_buckets, **summary(times, expect, cpu)}
        log(f"  {label}: median {out[label]['median_ms']:.3f} ms, {expect} due")
    restore()
    return out


def scan_decoded(journeys: dict[bytes, bytes], now_ms: int) -> int:
    found = 0
    for raw in journeys.values():
        for p in decode_state(raw).pending:
            if p.due_ms <= now_ms:
                found += 1
    return found


def scan_json(journeys: dict[bytes, bytes], now_ms: int) -> int:
    found = 0
    loads = orjson.loads
    for raw in journeys.values():
        for p in loads(raw)["pending"]:
            if p["due_ms"] <= now_ms:
                found += 1
    return found


async def measure_clock_record(width_ms: int, repeats: int = 2001) -> dict[str, Any]:
    """What every clock move pays before anything is due: reading the clock record,
    which lists each bucket holding items. A move that completes no bucket (after
    each event, and most ticks) by the number of such buckets."""
    out: dict[str, Any] = {}
    b0 = CLOCK_START_MS // width_ms
    at = b0 * width_ms + width_ms // 2
    for n_buckets in (0, 60, 180, 720, 2880):
        clock = PartitionClock(at, b0 - 1, tuple(range(b0 + 1, b0 + 1 + n_buckets)))
        shell = Shell({}, width_ms)
        shell.timers[clock_key(PARTITION)] = clock.to_bytes()
        times: list[float] = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            await shell.move_clock(PARTITION, at + 1000)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        out[str(n_buckets)] = {
            "buckets_listed": n_buckets,
            "pending_horizon_minutes": n_buckets * width_ms / 60_000,
            "clock_record_bytes": len(shell.timers[clock_key(PARTITION)]),
            "median_us": round(med * 1e6, 1),
            "min_us": round(min(times) * 1e6, 1),
        }
        log(f"  clock record with {n_buckets} buckets: median {med * 1e6:.1f} us")
    return out


def measure_scans(built: Built, repeats: int, per_bucket: int) -> dict[str, Any]:
    shell = built.shell
    n = len(shell.journeys)
    now = (built.first_bucket + 2) * shell.width_ms  # one bucket's worth is due
    out: dict[str, Any] = {}
    for label, fn in (
        ("scan: decode_state every record", scan_decoded),
        ("scan: orjson.loads every record (lower bound)", scan_json),
    ):
        times: list[float] = []
        cpu: list[float] = []
        for _ in range(repeats):
            gc.collect()
            c0, t0 = time.process_time(), time.perf_counter()
            found = fn(shell.journeys, now)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            assert found == per_bucket, (label, found)
        med = statistics.median(times)
        out[label] = {
            **summary(times, found, cpu),
            "us_per_customer": round(med * 1e6 / n, 3),
        }
        log(f"  {label}: median {med:.2f} s ({med * 1e6 / n:.2f} us/customer)")
    return out


# ------------------------------------------------------------------ report


def git_info() -> dict[str, Any]:
    return procs.git_info(ROOT)


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def markdown(result: dict[str, Any]) -> str:
    cfg = result["config"]
    runs = result["runs"]
    sizes = list(runs)
    labels = list(next(iter(runs.values()))["ticks"])
    machine_ = result["machine"]
    git = result["git"]
    lines = [
        "## Moving the event-time clock",
        "",
        f"In process, no Kafka (`{result['command']}`; {machine_['cpu_model']}, "
        f"{machine_['cores']} cores; commit {str(git['commit'])[:7]}"
        f"{' + uncommitted changes' if git['worktree_dirty'] else ''}). The journey table "
        "is a dict of `encode_state` bytes, the index the worker's own "
        "`streams.timer_index.TimerIndex` on a second dict; states are clones of "
        "journeys the real core made from simulated traffic, under new customer ids. All "
        f"N customers sit in one partition; {cfg['pending_reminders']:,} of them hold a "
        f"`{RULE_ID}` reminder (made by a real `step` of a coupon claim), "
        f"{cfg['per_bucket']} due in each 10 s bucket of the next {cfg['spread_minutes']} "
        "min: the same for every N. A tick decodes each due journey, runs `engine.tick`, "
        "stamps and encodes each output (not sent) and re-encodes the journey. Medians of "
        "repeats from the same restored index, wall and CPU time (other jobs shared the "
        f"2 cores: load {machine_['loadavg_at_start'][0]:.1f} at start, "
        f"{machine_['loadavg_at_end'][0]:.1f} at end).",
        "",
        "| clock move | due | "
        + " | ".join(f"N = {int(n):,}: wall ms | CPU ms | CPU µs/due" for n in sizes)
        + " |",
        "|---|---:|" + "---:|---:|---:|" * len(sizes),
    ]
    for label in labels:
        first = runs[sizes[0]]["ticks"][label]
        cells = []
        for n in sizes:
            t = runs[n]["ticks"][label]
            per = f"{t['cpu_us_per_due_item']:.0f}" if t["cpu_us_per_due_item"] else "–"
            cells.append(f"{t['median_ms']:.2f} | {t['median_cpu_ms']:.2f} | {per}")
        lines.append(f"| {label} | {first['due_items']:,} | " + " | ".join(cells) + " |")
    for label in next(iter(runs.values()))["scans"]:
        cells = []
        for n in sizes:
            t = runs[n]["scans"][label]
            cells.append(
                f"{t['median_ms']:,.0f} | {t['median_cpu_ms']:,.0f} | "
                f"{t['us_per_customer']:.1f} per customer"
            )
        lines.append(f"| naive {label} | {cfg['per_bucket']} | " + " | ".join(cells) + " |")
    size_cells = []
    for n in sizes:
        st = runs[n]["state_bytes"]
        size_cells.append(
            f"N = {int(n):,}: min {st['min']:,} / median {st['median']:,} / p99 {st['p99']:,} "
            f"/ max {st['max']:,} B ({st['total_mb']:,.0f} MB in all)"
        )
    lines += [
        "",
        "Bytes per customer state (`encode_state`): " + "; ".join(size_cells) + ".",
        "",
        "A clock move that completes no bucket (after every event, and most idle ticks) "
        "still reads the clock record, which lists every bucket holding items:",
        "",
        "| buckets listed (pending horizon) | clock record bytes | median µs |",
        "|---|---:|---:|",
    ]
    for rec in result["clock_record"].values():
        lines.append(
            f"| {rec['buckets_listed']:,} ({rec['pending_horizon_minutes']:.0f} min) | "
            f"{rec['clock_record_bytes']:,} | {rec['median_us']:.1f} |"
        )
    lines += ["", result.get("interpretation", "")]
    return "\n".join(lines).rstrip() + "\n"


def interpret(result: dict[str, Any]) -> str:
    runs = result["runs"]
    ns = sorted(runs, key=int)
    small, big = runs[ns[0]], runs[ns[-1]]
    one_b, jump = "+1 bucket (10 s)", "+1 hour jump (360 buckets)"
    decode_scan = "scan: decode_state every record"
    json_scan = "scan: orjson.loads every record (lower bound)"
    s_b, b_b = small["ticks"][one_b], big["ticks"][one_b]
    s_j, b_j = small["ticks"][jump], big["ticks"][jump]
    rec = result["clock_record"]
    real = rec.get("180", {})
    wide = rec.get(str(result["config"]["buckets"]), {})
    ratio = int(ns[-1]) // int(ns[0])
    lo, hi = sorted(round(x["cpu_us_per_due_item"]) for x in (s_j, b_j))
    per_item = f"{lo}" if lo == hi else f"{lo}–{hi}"
    return (
        f"The tick costs O(items due), not O(customers): with {ratio}x the customers, one "
        f"bucket with {s_b['due_items']} due takes {s_b['median_cpu_ms']:.2f} vs "
        f"{b_b['median_cpu_ms']:.2f} ms of CPU and the one-hour jump with "
        f"{s_j['due_items']:,} due {s_j['median_cpu_ms']:.0f} vs {b_j['median_cpu_ms']:.0f} ms, "
        f"{per_item} µs per due item, "
        "which is the work on each fired journey (decode, `fire_due`, build and encode the output, "
        "re-encode); the index itself is a dict look-up per bucket and per customer. The "
        "wall-time spread between the runs is the shared machine. Scanning the table instead "
        "costs "
        f"{big['scans'][decode_scan]['median_cpu_ms'] / 1e3:,.1f} s of CPU per tick at "
        f"N = {int(ns[-1]):,} with `decode_state` "
        f"({big['scans'][json_scan]['median_cpu_ms'] / 1e3:,.1f} s even with `orjson.loads` "
        "alone), so with ticks every 5 s a scan could not keep up beyond a few hundred "
        "thousand customers per worker. What does grow is the clock record: it lists every "
        "bucket holding items and is parsed on every clock move, including the one after "
        f"each event: {real.get('median_us', 0):.0f} µs with a 30-minute horizon (180 "
        "buckets, the most a 30-minute rule leaves pending when events come in order), "
        f"{wide.get('median_us', 0):.0f} "
        f"µs with the {result['config']['buckets']} buckets used here, against the core's "
        "~90–140 µs per event (`bench.ceiling`), so much longer delays (days) would want "
        "the decoded clock cached per partition or a bisect in `PartitionClock.advance`. "
        "Journey records are about 1 kB (p99 2.5 kB), so 1M customers are about 1 GB of "
        "table."
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tick", description=__doc__)
    parser.add_argument("--sizes", default="10000,1000000", help="customers, comma separated")
    parser.add_argument("--per-bucket", type=int, default=10, help="reminders due per bucket")
    parser.add_argument("--spread-minutes", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--scan-repeats", type=int, default=3)
    parser.add_argument("--personas", type=int, default=3000)
    parser.add_argument("--template-events", type=int, default=60_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--section", type=Path, default=ROOT / "bench" / "sections" / "tick.md")
    parser.add_argument(
        "--render", type=Path, default=None, help="only rewrite the section from this results JSON"
    )
    args = parser.parse_args(argv)
    if args.render is not None:
        rendered: dict[str, Any] = json.loads(args.render.read_text())
        rendered["interpretation"] = interpret(rendered)
        args.render.write_text(json.dumps(rendered, indent=1, ensure_ascii=False) + "\n")
        args.section.write_text(markdown(rendered))
        print(markdown(rendered))
        return

    settings = Settings()
    width_s = settings.timer_resolution_seconds
    buckets = args.spread_minutes * 60 // width_s
    started = datetime.now(UTC)
    load0 = os.getloadavg()
    log(f"templates: {args.template_events:,} simulated events through admit + step")
    t0 = time.perf_counter()
    pool = templates(settings, args.personas, args.template_events, args.seed)
    template_s = time.perf_counter() - t0
    stages = Counter(s.stage for s in pool)
    log(f"  {len(pool):,} template journeys in {template_s:.1f}s, stages {dict(stages)}")

    runs: dict[str, Any] = {}
    for n in (int(x) for x in args.sizes.split(",")):
        log(f"N = {n:,}: building the table and the index")
        gc.collect()
        built = build(n, pool, settings, args.per_bucket, buckets, args.seed)
        gc.collect()
        rss = rss_mib()
        timers_bytes = sum(len(k) + len(v) for k, v in built.shell.timers.items())
        clock_bytes = len(built.shell.timers[clock_key(PARTITION)])
        log(f"  built in {built.build_seconds:.1f}s, RSS {rss:,.0f} MiB")
        ticks = asyncio.run(measure_ticks(built, args.repeats, args.per_bucket))
        scans = measure_scans(built, args.scan_repeats if n <= 100_000 else 1, args.per_bucket)
        runs[str(n)] = {
            "customers": n,
            "build_seconds": round(built.build_seconds, 1),
            "rss_mib_after_build": rss,
            "state_bytes": sizes_of(built.shell.journeys),
            "index": {
                "timers_records": len(built.shell.timers),
                "timers_bytes": timers_bytes,
                "clock_record_bytes": clock_bytes,
            },
            "ticks": ticks,
            "scans": scans,
        }
        del built
        gc.collect()

    log("a clock move that completes no bucket, by buckets listed in the clock record")
    clock_record = asyncio.run(measure_clock_record(width_s * 1000))

    result: dict[str, Any] = {
        "schema": "journeyflow.bench.tick/1",
        "command": " ".join(["python -m bench.tick", *map(shlex.quote, sys.argv[1:])]),
        "date": started.isoformat(timespec="seconds"),
        "git": git_info(),
        "machine": {
            **machine(),
            "loadavg_at_start": list(load0),
            "loadavg_at_end": list(os.getloadavg()),
            "python_impl": platform.python_implementation(),
        },
        "versions": versions(KAFKA_VERSION),
        "config": {
            "partition_model": "all N customers in one partition (the harsher case)",
            "timer_resolution_seconds": width_s,
            "per_bucket": args.per_bucket,
            "spread_minutes": args.spread_minutes,
            "buckets": buckets,
            "pending_reminders": args.per_bucket * buckets,
            "rule": RULE_ID,
            "templates": {
                "personas": args.personas,
                "simulated_events": args.template_events,
                "seed": args.seed,
                "journeys": len(pool),
                "stages": dict(stages),
                "seconds": round(template_s, 1),
            },
            "states": "clones of the simulated template journeys with new customer ids; "
            "the reminder holders also got one real coupon-claim step",
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        },
        "runs": runs,
        "clock_record": clock_record,
    }
    result["interpretation"] = interpret(result)
    out = args.out or ROOT / "bench" / "results" / f"tick-{started:%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    args.section.parent.mkdir(parents=True, exist_ok=True)
    args.section.write_text(markdown(result))
    log(f"wrote {out} and {args.section}")
    print(markdown(result))


if __name__ == "__main__":
    main()
