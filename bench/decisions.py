"""What learning costs, in process (no Kafka): ``python -m bench.decisions``.

1. **Per event, paired.** The worker's batch protocol in process
   (:func:`bench.ceiling._batch_pass`: admission, One-ID, the journey engine,
   timers, every codec) over the same simulated bytes in three modes,
   rotated ``--pairs`` times; CPU time: ``off`` (``JOURNEYFLOW_DECISIONS``
   off), ``learning`` (decisions on, ``JOURNEYFLOW_ACTIONS`` off) and
   ``actions`` (both on: the default). The differences are what decisions
   add to the hot path (spotting decision points, reading features, scoring
   both targets, recording the decision, labels from transactions, encoding
   the examples, the decisions table) and what choosing actions adds on top
   (eligibility, contact policies, Thompson sampling, the contact history).
   Reported per input event and per decision made.
2. **Per decision, by part**, on the decisions and examples that run made
   (the clock is then moved past every horizon so every decision is
   labelled): reading the features (``models.features.journey_features``
   on the final journeys), scoring one target with a model trained on those
   examples, one ``Trainer.learn``, a snapshot (bytes, time to take and to
   swap in), and one arbitration (``streams.core.actions.choose`` on each
   final journey's newest decision).

The machine, versions and git commit go into the JSON with the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import ceiling, procs
from bench.procs import machine, versions
from models.features import journey_features
from models.labels import Decision
from models.trainer import ModelScorer, Trainer, encode_example
from schemas.codec import decode_touchpoint
from streams import collector
from streams.config import core_config, model_specs
from streams.core.actions import choose
from streams.core.journey import decode_state
from streams.settings import Settings
from streams.simulate import SimulationConfig, simulate

ROOT = Path(__file__).resolve().parents[1]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def inputs(events: int, seed: int, customers: int) -> list[tuple[bytes, int]]:
    now_ms = int(time.time() * 1000)
    start = datetime.now(UTC) - timedelta(hours=6)
    config = SimulationConfig(seed=seed, customers=customers, start=start)
    return [(r.value, now_ms) for r in itertools.islice(simulate(config), events)]


MODES = ("off", "learning", "actions")


def paired(data: Sequence[tuple[bytes, int]], pairs: int, partitions: int) -> dict[str, Any]:
    """CPU seconds of the batch protocol in each mode, the order rotated."""
    cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
    counts: dict[str, Any] = {}
    for i in range(pairs):
        for mode in MODES[i % 3 :] + MODES[: i % 3]:
            settings = Settings(
                partitions=partitions, decisions=mode != "off", actions=mode == "actions"
            )
            with collector.tuned(settings.gc_threshold):  # as the worker runs
                _, seconds, c = ceiling._batch_pass(data, settings)
            cpu[mode].append(seconds)
            counts[mode] = c
            log(f"  round {i + 1} {mode}: {seconds:.2f} s CPU")
    return {"cpu_s": cpu, "counts": counts}


def decisions_made(
    data: Sequence[tuple[bytes, int]], partitions: int
) -> tuple[ceiling.TopicRuntime, Settings, int]:
    """One pass with decisions on, then the clock past every horizon: the
    runtime (final journeys, examples), its settings, and the decisions made
    (labelled, or still open: a customer's fifth open decision drops its first)."""
    settings = Settings(partitions=partitions)
    rt = ceiling.topic_runtime(settings)

    async def go() -> None:
        await ceiling.feed(rt, data, settings)
        end = max((decode_state(v).last_seen_ms for v in rt.journeys.values()), default=0)
        await rt.advance_all(end + 15 * 86_400_000 + 1)

    asyncio.run(go())
    still_open = {d.decision_id for v in rt.journeys.values() for d in decode_state(v).decisions}
    return rt, settings, len({e.decision_id for e in rt.examples} | still_open)


def timed(fn: Any, items: Sequence[Any], repeats: int = 3) -> float:
    """Median over repeats of the mean µs per item."""
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for item in items:
            fn(item)
        runs.append((time.perf_counter() - t0) / max(1, len(items)) * 1e6)
    return round(statistics.median(runs), 2)


def parts(rt: Any, settings: Settings, first_event: bytes) -> dict[str, Any]:
    journeys = list(rt.customers().values())  # decision fields included
    core = core_config(settings)
    examples = list(rt.examples)
    specs = model_specs(settings)
    trainer = Trainer(specs)
    learn_us = timed(trainer.learn, examples, repeats=1)
    scorer = ModelScorer(specs)
    snapshots = {t: trainer.snapshot(t) for t in specs}
    t0 = time.perf_counter()
    for raw in snapshots.values():
        scorer.install(raw)
    install_ms = (time.perf_counter() - t0) * 1000 / len(snapshots)
    features = [e.features for e in examples] or [{}]
    # every decision is labelled by now: decide once more at each customer's last event
    event = decode_touchpoint(first_event)
    actions = core.decisions.actions if core.decisions is not None else None
    deciding = [
        (j, Decision(f"bench-{j.customer_id}", j.last_seen_ms, {}, {"convert": 0.3}))
        for j in journeys
    ]
    choose_us = (
        timed(
            lambda jd: choose(jd[0], event, jd[1], actions, scorer, core.scoring, core.limits),
            deciding,
        )
        if actions is not None
        else None
    )
    return {
        "journeys": len(journeys),
        "examples": len(examples),
        "examples_by_target": {t: sum(1 for e in examples if e.target == t) for t in sorted(specs)},
        "positives_by_target": {
            t: sum(1 for e in examples if e.target == t and e.label) for t in sorted(specs)
        },
        "features_us": timed(lambda j: journey_features(j, j.last_seen_ms, core.scoring), journeys),
        "score_one_target_us": timed(lambda x: scorer.score("convert", x), features),
        "learn_us": learn_us,
        "example_bytes_median": statistics.median(len(encode_example(e)) for e in examples)
        if examples
        else None,
        "snapshot_bytes": {t: len(raw) for t, raw in snapshots.items()},
        "snapshot_install_ms": round(install_ms, 2),
        "choose_us": choose_us,
    }


def markdown(result: dict[str, Any]) -> str:
    p = result["paired"]
    cpu = p["cpu_s"]
    if "on" in cpu:  # results written before the actions mode
        cpu = {"off": cpu["off"], "learning": cpu["on"]}
    modes = [m for m in MODES if m in cpu]
    n = result["config"]["events"]
    made = result["decisions_made"]
    parts = result["parts"]
    means = {m: statistics.mean(cpu[m]) for m in modes}
    last = modes[-1]
    kept = [o / d for o, d in zip(cpu["off"], cpu[last], strict=True)]
    per_decision = {m: (means[m] - means["off"]) / max(1, made) * 1e6 for m in modes}
    lines = [
        f"Events: {n:,} (seed {result['config']['seed']}); decisions made: {made:,} "
        f"({made / n:.1%} of events); examples labelled: {parts['examples']:,}.",
        "",
        "| round | " + " | ".join(f"{m}: CPU s" for m in modes) + f" | off ÷ {last} |",
        "|---|" + "---:|" * (len(modes) + 1),
        *(
            f"| {i + 1} | " + " | ".join(f"{cpu[m][i]:.2f}" for m in modes) + f" | {kept[i]:.2f} |"
            for i in range(len(kept))
        ),
        "| mean | "
        + " | ".join(f"{means[m]:.2f} ({means[m] / n * 1e6:.0f} µs/event)" for m in modes)
        + f" | {means['off'] / means[last]:.2f} |",
        "",
        f"All in, from the means: {per_decision[last]:.0f} µs "
        f"per decision made with {last} on (rounds range {min(kept):.2f}-{max(kept):.2f} of "
        "the throughput kept)"
        + (
            f"; choosing actions alone {per_decision['actions'] - per_decision['learning']:.0f} µs."
            if "actions" in means
            else "."
        ),
        "",
        "| part, per decision | µs |",
        "|---|---:|",
        f"| features (`journey_features`) | {parts['features_us']} |",
        f"| score one target (River logistic regression) | {parts['score_one_target_us']} |",
        f"| learn one example (trainer) | {parts['learn_us']} |",
        f"| choose an action (`actions.choose`: eligibility, policies, sampling) | "
        f"{parts.get('choose_us', '–')} |",
        "",
        f"Snapshots: {parts['snapshot_bytes']} bytes; swapping one in "
        f"{parts['snapshot_install_ms']} ms. Example record median "
        f"{parts['example_bytes_median']} bytes.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.decisions", description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--output", type=Path, help="results JSON (default: stdout only)")
    parser.add_argument("--report", type=Path, help="print a results file's tables")
    args = parser.parse_args(argv)
    if args.report:
        print(markdown(json.loads(args.report.read_text())))
        return
    log(f"simulating {args.events:,} events")
    data = inputs(args.events, args.seed, args.customers)
    log("batch protocol with decisions off and on, alternated")
    pair = paired(data, args.pairs, args.partitions)
    log("decisions made, labelled, learned")
    rt, settings, made = decisions_made(data, args.partitions)
    result = {
        "command": " ".join(["python -m bench.decisions", *(argv or sys.argv[1:])]),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions("not used (in process)"),
        "git": procs.git_info(ROOT),
        "config": vars(args) | {"output": str(args.output) if args.output else None},
        "paired": pair,
        "decisions_made": made,
        "parts": parts(rt, settings, next(v for v, _ in data if v.startswith(b"{"))),
    }
    if args.output:
        args.output.write_text(json.dumps(result, indent=2, default=str))
        log(f"results in {args.output}")
    print(markdown(result))


if __name__ == "__main__":
    main()
