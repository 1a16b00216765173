"""What One-ID costs, in process (no Kafka): ``python -m bench.oneid``.

The same admitted, simulated events go through two paths on one core, in
the same run:

- baseline: the engine alone, each event stepped on the journey of its
  strongest identifier (journeyflow before One-ID: no links, no merges),
  its record encoded and decoded once as on the old internal topic;
- One-ID: the worker's message protocol (``streams.runtime.LocalRuntime``
  driving ``streams.core.oneid.handle``), every message encoded and decoded
  as on the internal topic, tables as dicts of bytes like the worker's.

Reported: events/s and CPU per event for both; messages per event by kind
(each is one more record on the internal topic); merges and refusals; how
the messages spread over partitions and keys (no step is serial: the
largest partition's and the hottest key's share); bytes per customer record;
and the record of one customer after 1,000 and after 100,000 varied events
(new rooms, stores, orders, consent purposes and brand events, ids of one
width): the record has a fixed upper bound.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import statistics
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streams.batch import Record
from streams.config import ingest_policy, oneid_config
from streams.core.engine import step
from streams.core.ingest import Admitted, RecordMeta, admit
from streams.core.journey import JourneyState, decode_state, encode_state
from streams.core.oneid import Message, encode_message
from streams.runtime import LocalRuntime
from streams.settings import Settings
from streams.simulate import SimulationConfig, simulate

RESULTS = Path(__file__).resolve().parent / "results"
SECTIONS = Path(__file__).resolve().parent / "sections"


def admitted_events(n: int, seed: int, customers: int) -> list[Admitted]:
    config = SimulationConfig(
        seed=seed,
        customers=customers,
        start=datetime(2026, 11, 23, 12, 0, tzinfo=UTC),
        events_per_second=50.0,
        dirty_share=0.0,
    )
    policy = ingest_policy(Settings())
    out = []
    for offset, record in enumerate(itertools.islice(simulate(config), n)):
        result = admit(record.value, RecordMeta("bench", 0, offset), policy)
        if isinstance(result, Admitted):
            out.append(result)
    return out


def run_baseline(events: list[Admitted], settings: Settings) -> dict[str, Any]:
    core = oneid_config(settings).core
    table: dict[bytes, bytes] = {}
    wall, cpu = time.perf_counter(), time.process_time()
    for admitted in events:
        key = admitted.customer_id.encode()
        # the record the old worker re-keyed and read back from its internal topic
        admitted = Admitted.from_internal(admitted.to_bytes(), admitted.customer_id, "0:0")
        raw = table.get(key)
        result = step(decode_state(raw) if raw else None, admitted, core)
        if result.state is not None:
            table[key] = encode_state(result.state)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "events": len(events),
        "events_per_s": len(events) / wall,
        "cpu_us_per_event": cpu / len(events) * 1e6,
        "customers": len(table),
    }


class MeasuredRuntime(LocalRuntime):
    """LocalRuntime that encodes and decodes every message (as the topic does)
    and counts where messages go."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.by_kind: Counter[str] = Counter()
        self.by_partition: Counter[int] = Counter()
        self.by_key: Counter[str] = Counter()

    def record(self, partition: int, offset: int, key: str, msg: Message) -> Record:
        raw = encode_message(msg)
        self.by_kind[msg.kind] += 1
        self.by_partition[partition] += 1
        self.by_key[key] += 1
        return Record("keyed", "internal", partition, offset, key.encode(), raw)


def run_oneid(events: list[Admitted], settings: Settings) -> dict[str, Any]:
    rt = MeasuredRuntime(oneid_config(settings), settings.partitions, 10_000)

    async def go() -> None:
        for admitted in events:
            rt.submit(admitted)
            await rt.run()

    wall, cpu = time.perf_counter(), time.process_time()
    asyncio.run(go())
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    messages = sum(rt.by_kind.values())
    mean = messages / settings.partitions
    sizes = sorted(len(v) for v in rt.journeys.values())
    hottest_key, hottest = rt.by_key.most_common(1)[0]
    return {
        "events": len(events),
        "events_per_s": len(events) / wall,
        "cpu_us_per_event": cpu / len(events) * 1e6,
        "customers": len(rt.journeys),
        "aliases": len(rt.aliases),
        "merges": len(rt.merges),
        "refusals": {k: v for k, v in rt.counts.items() if k.startswith("refused_")},
        "messages": messages,
        "messages_per_event": messages / len(events),
        "messages_by_kind": dict(rt.by_kind.most_common()),
        "partition_share_max_over_mean": max(rt.by_partition.values()) / mean,
        "hottest_key_share": hottest / messages,
        "hottest_key_kind": hottest_key.partition(":")[0],
        "customer_bytes": {
            "median": statistics.median(sizes),
            "p99": sizes[int(len(sizes) * 0.99)],
            "max": sizes[-1],
        },
    }


def bounded_record(settings: Settings) -> dict[str, int]:
    core = oneid_config(settings).core
    policy = ingest_policy(Settings())
    state: JourneyState | None = None
    sizes = {}
    base = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    for i in range(1, 100_001):
        kind = i % 5
        body: dict[str, Any] = {
            "event_id": f"b-{i:06d}",
            "occurred_at": datetime.fromtimestamp(base + i * 60, tz=UTC).isoformat(),
            "identities": {"member_id": "M-1"},
        }
        if kind == 0:
            body |= {
                "event_type": "order.paid",
                "channel": "ecommerce",
                "properties": {"order_id": f"O-{i:06d}", "amount_minor": 100},
            }
        elif kind == 1:
            body |= {
                "event_type": "live.comment",
                "channel": "livestream",
                "context": {"live_room_id": f"r-{i:06d}"},
                "properties": {"text": "hi"},
            }
        elif kind == 2:
            body |= {"event_type": f"custom.e{i:06d}", "channel": "mini_program"}
        elif kind == 3:
            body |= {
                "event_type": "consent.granted",
                "channel": "mini_program",
                "properties": {"channel": "wechat_group", "purpose": f"p{i:06d}"},
            }
        else:
            body |= {
                "event_type": "store.check_in",
                "channel": "store",
                "context": {"store_id": f"s-{i:06d}"},
            }
        admitted = admit(json.dumps(body).encode(), RecordMeta("b", 0, i), policy)
        assert isinstance(admitted, Admitted), admitted
        state = step(state, admitted, core).state
        if i in (1_000, 100_000):
            assert state is not None
            sizes[f"after_{i}_events"] = len(encode_state(state))
    return sizes


def render(result: dict[str, Any]) -> str:
    base, one = result["baseline"], result["oneid"]
    kinds = ", ".join(f"{k} {v / one['events']:.2f}" for k, v in one["messages_by_kind"].items())
    size = one["customer_bytes"]
    bound = result["one_customer"]
    return "\n".join(
        [
            f"`{result['command']}` — {result['machine']}, {result['when']}, "
            f"{one['events']:,} simulated events (seed {result['seed']}, "
            f"{result['customers']:,} people), {result['partitions']} partitions.",
            "",
            "| path (one core, in process) | events/s | CPU µs/event | customers |",
            "|---|---:|---:|---:|",
            "| baseline: engine only, keyed by the strongest identifier | "
            f"{base['events_per_s']:,.0f} | {base['cpu_us_per_event']:,.0f} | "
            f"{base['customers']:,} |",
            "| One-ID: message protocol + engine, messages encoded | "
            f"{one['events_per_s']:,.0f} | {one['cpu_us_per_event']:,.0f} | "
            f"{one['customers']:,} |",
            "",
            f"- messages per event: **{one['messages_per_event']:.2f}** ({kinds});",
            f"- merges {one['merges']:,}, refusals {one['refusals'] or 'none'}, "
            f"alias records {one['aliases']:,};",
            f"- spread: the busiest partition handles {one['partition_share_max_over_mean']:.2f}× "
            f"the mean; the hottest key (a `{one['hottest_key_kind']}`) "
            f"{one['hottest_key_share']:.2%} of all messages;",
            f"- bytes per customer record: median {size['median']:,} / p99 {size['p99']:,} / "
            f"max {size['max']:,};",
            f"- one customer with 1,000 varied events: {bound['after_1000_events']:,} B; with "
            f"100,000: {bound['after_100000_events']:,} B.",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--partitions", type=int, default=8)
    args = parser.parse_args()
    settings = Settings(partitions=args.partitions)
    events = admitted_events(args.events, args.seed, args.customers)
    result: dict[str, Any] = {
        "command": "python -m bench.oneid " + " ".join(f"--{k} {v}" for k, v in vars(args).items()),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%MZ"),
        "seed": args.seed,
        "customers": args.customers,
        "partitions": args.partitions,
        "load_at_start": os.getloadavg()[0],
    }
    result["baseline"] = run_baseline(events, settings)
    result["oneid"] = run_oneid(events, settings)
    result["one_customer"] = bounded_record(settings)
    result["load_at_end"] = os.getloadavg()[0]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"oneid-{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
    text = render(result)
    SECTIONS.mkdir(exist_ok=True)
    (SECTIONS / "oneid.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
