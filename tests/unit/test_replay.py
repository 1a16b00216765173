"""journeyflow replay: the worker's logic in process, deterministic."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta

from click.testing import CliRunner

from streams.cli import main
from streams.replay import journey_partition, replay
from streams.settings import Settings
from streams.simulate import SimulationConfig, simulate

START = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def lines(n: int = 3000) -> list[bytes]:
    config = SimulationConfig(seed=3, customers=300, start=START, events_per_second=20.0)
    return [r.value for r in itertools.islice(simulate(config), n)]


def test_every_input_is_accounted_for_and_runs_repeat_exactly() -> None:
    data = lines()
    first = replay(data, Settings())
    again = replay(data, Settings())
    c = first.counts
    assert c["in"] + c["blank_lines_skipped"] == len(data)
    assert (
        c["processed"] + c["duplicate"] + c["redelivered"] + c["erased"] + c["dead_lettered"]
        == c["in"]
    )
    assert c["dead_lettered"] > 0 and c["duplicate"] > 0  # the simulator's dirty share
    assert sum(j.events_total for j in first.journeys.values()) == c["processed"]
    assert list(first.records()) == list(again.records())
    assert {o.kind for o in first.outputs} >= {"action", "live_trigger"}


def test_until_fires_what_is_due_by_then() -> None:
    data = lines()
    plain = replay(data, Settings())
    later = replay(data, Settings(), until_ms=int((START + timedelta(days=1)).timestamp() * 1000))
    pending = sum(len(j.pending) for j in plain.journeys.values())
    reminders = [o for o in later.outputs if o.rule_id == "live_coupon_reminder"]
    assert pending > 0
    assert all(not j.pending for j in later.journeys.values())
    assert len(reminders) >= pending


def test_partition_matches_kafkas_default_partitioner() -> None:
    from aiokafka.partitioner import DefaultPartitioner

    parts = list(range(8))
    for n in range(200):
        key = f"member_id:M-{n}"
        assert journey_partition(key, 8) == DefaultPartitioner()(key.encode(), parts, parts)


def test_the_command_writes_ndjson_and_a_summary(tmp_path) -> None:
    src = tmp_path / "in.ndjson"
    src.write_bytes(b"\n".join(lines(500)) + b"\n")
    out = tmp_path / "out.ndjson"
    result = CliRunner().invoke(main, ["replay", str(src), "--output", str(out)])
    assert result.exit_code == 0, result.output
    records = [json.loads(x) for x in out.read_text().splitlines()]
    kinds = {r["kind"] for r in records}
    assert {"journey", "action", "dead_letter"} <= kinds
    assert "processed" in result.output
    bad = CliRunner().invoke(main, ["replay", str(src), "--until", "tomorrow"])
    assert bad.exit_code == 1 and "RFC 3339" in bad.output
