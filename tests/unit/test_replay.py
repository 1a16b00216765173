"""journeyflow replay: the worker's logic in process, deterministic."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from click.testing import CliRunner

from streams.cli import main
from streams.core.profile import DECISION_PARTS as DECIDED
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
    until = int((START + timedelta(days=1)).timestamp() * 1000)
    later = replay(data, Settings(), until_ms=until)
    pending = sum(
        1 for j in plain.journeys.values() for p in j.pending if p.rule_id == "live_coupon_reminder"
    )
    reminders = [o for o in later.outputs if o.rule_id == "live_coupon_reminder"]
    assert pending > 0
    assert all(p.due_ms > until for j in later.journeys.values() for p in j.pending)
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


def _customer_of_each_line(data: list[bytes], result: Any) -> list[str]:
    """The final customer each valid line belongs to (by its strongest identifier)."""
    from streams.config import ingest_policy
    from streams.core.identity import typed_identifiers
    from streams.core.ingest import Admitted, RecordMeta, admit

    owner = {}
    for customer_id, journey in result.journeys.items():
        for ident in journey.identifiers:
            owner[ident] = customer_id
    policy = ingest_policy(Settings())
    out = []
    for n, line in enumerate(data):
        admitted = admit(line, RecordMeta("replay", 0, n), policy)
        if not isinstance(admitted, Admitted):
            out.append("")
            continue
        ids = typed_identifiers(admitted.event.identities)
        out.append(next((owner[i] for i in ids if i in owner), ids[0]))
    return out


def _profiles(result: Any) -> dict[str, dict[str, Any]]:
    from streams.config import core_config
    from streams.core.profile import profile_view

    scoring = core_config(Settings()).scoring
    views = {}
    for customer_id, journey in result.journeys.items():
        view = profile_view(journey, scoring)
        for decided in DECIDED:  # what each side knew when it decided (README, Replay)
            view.pop(decided)
        view["identifiers"] = sorted(view["identifiers"])
        views[customer_id] = view
    return views


def _output_set(result: Any) -> set[bytes]:
    import orjson

    return {
        orjson.dumps(r, option=orjson.OPT_SORT_KEYS)
        for r in result.records()
        if r["kind"] in ("action", "alert", "live_trigger", "merge")
    }


def test_final_profiles_do_not_depend_on_arrival_order_across_identities() -> None:
    import random

    data = lines(2000)
    base = replay(data, Settings())
    assert base.counts["merges"] > 0  # the simulator's people link identifiers
    shuffled = list(data)
    random.Random(7).shuffle(shuffled)

    again = replay(shuffled, Settings())

    assert _profiles(again) == _profiles(base)


def test_outputs_and_merges_are_the_same_when_each_customer_keeps_its_order() -> None:
    import random

    data = lines(2000)
    base = replay(data, Settings())
    owners = _customer_of_each_line(data, base)
    queues: dict[str, list[bytes]] = {}
    for owner, line in zip(owners, data, strict=True):
        queues.setdefault(owner, []).append(line)
    rng = random.Random(11)
    interleaved: list[bytes] = []
    while queues:  # a random interleaving that keeps every customer's order
        owner = rng.choice(sorted(queues))
        interleaved.append(queues[owner].pop(0))
        if not queues[owner]:
            del queues[owner]
    assert interleaved != data

    again = replay(interleaved, Settings())

    assert _output_set(again) == _output_set(base)
