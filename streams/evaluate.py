"""``journeyflow evaluate``: do the decisions work? The closed loop on the
simulator's ground truth, in process (issue #10).

The simulator (``streams.simulate.Simulation``) produces the traffic of
``customers`` people over ``days`` of event time; every record goes through
the worker's batch protocol (``streams.runtime.LocalRuntime``: admission,
One-ID, the journey engine, decisions, action choice, timers). The learning
loop runs as in the worker: labelled examples go to a trainer, whose
snapshots every ``snapshot_every`` examples are swapped into the scorer the
engine decides with. Every action sent is answered by the simulated customer
(feedback, and a higher chance to buy after a click), and that feedback goes
back through the batch protocol. What comes out is one JSON object:

- ``auc_online``: the convert model's decision-time scores against the labels
  that came later (progressive validation), on the later half of the
  labelled decisions (by decision time); ``auc_batch``: a batch model
  (scikit-learn: standardised features, logistic regression) trained on the
  earlier half and scored on the later half; ``auc_lead_score``: the lead
  score as the score, on the later half; ``auc_online_all``: every decision.
- ``conversion_treated`` / ``conversion_holdout``: of the customers an action
  was chosen for (sent, or logged for the holdout), the share who bought after
  the first one, by group (intention-to-treat: the holdout is a hash of the
  customer id); ``lift`` = treated − holdout, with its 95 % confidence
  interval (normal approximation of a difference of proportions).
- ``policy_violations``: catalog actions that break the catalog's caps per
  channel per local day, cooldowns, quiet hours or the suppression after
  ignored deliveries, recomputed by the independent checker from the
  actions and the simulated feedback alone, per customer as decided
  (contacts two customers got before One-ID linked them are not a violation
  the engine could have avoided). The run's batches stand in for the
  changelog's write times: feedback applied in one counts for actions
  emitted in a later one.

Deterministic: the same arguments give the same object.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from models.labels import Example
from models.quality import exact_auc
from models.trainer import ModelScorer, Trainer
from schemas.codec import dump
from schemas.outputs import Action
from streams.audit import Knowledge, audit, reported_outcomes, sent_actions
from streams.batch import Record, Stream
from streams.config import ingest_policy, model_specs, oneid_config
from streams.core.actions import Catalog
from streams.errors import JourneyflowError
from streams.runtime import LocalRuntime
from streams.settings import Settings
from streams.simulate import Simulation, SimulationConfig

#: Simulated time starts here (a Monday, China Standard Time).
START = datetime(2026, 11, 2, 0, 0, tzinfo=timezone(timedelta(hours=8)))
DAY_MS = 86_400_000


@dataclass(frozen=True)
class EvaluateConfig:
    seed: int = 11
    customers: int = 1000
    days: float = 10.0
    #: Simulated events per second of event time (the traffic's density).
    events_per_second: float = 0.5
    #: Share of customers held out (percent): larger than a brand's 5 % so the
    #: lift's interval is narrow enough to say something.
    holdout_percent: float = 30.0
    #: The trainer publishes a snapshot to the scorer after this many examples.
    snapshot_every: int = 200
    partitions: int = 4
    #: Records admitted before the internal records are applied.
    chunk: int = 200

    def __post_init__(self) -> None:
        if self.customers < 10:
            raise JourneyflowError("--customers must be at least 10")
        if not 0 < self.days <= 120:
            raise JourneyflowError("--days must be in (0, 120]")
        if not 0 < self.holdout_percent < 100:
            raise JourneyflowError("--holdout-percent must be in (0, 100)")


def evaluate(
    config: EvaluateConfig,
    settings: Settings | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    return asyncio.run(_evaluate(config, settings or Settings(), progress or (lambda _: None)))


async def _evaluate(
    config: EvaluateConfig, settings: Settings, say: Callable[[str], None]
) -> dict[str, Any]:
    started = time.monotonic()
    specs = model_specs(settings)
    scorer = ModelScorer(specs)
    trainer = Trainer(specs)
    oneid = oneid_config(settings, scorer)
    decisions = oneid.core.decisions
    if decisions is None or decisions.actions is None:
        raise JourneyflowError("evaluate needs JOURNEYFLOW_DECISIONS and JOURNEYFLOW_ACTIONS on")
    catalog = decisions.actions.catalog.model_copy(
        update={"holdout_percent": config.holdout_percent}
    )
    actions = dataclasses.replace(decisions.actions, catalog=catalog)
    core = dataclasses.replace(
        oneid.core, decisions=dataclasses.replace(decisions, actions=actions)
    )
    runtime = LocalRuntime(
        dataclasses.replace(oneid, core=core),
        config.partitions,
        settings.timer_resolution_seconds * 1000,
        policy=ingest_policy(settings),
    )
    sim = Simulation(
        SimulationConfig(
            seed=config.seed,
            customers=config.customers,
            start=START,
            events_per_second=config.events_per_second,
            dirty_share=0.0,
        ),
        pii_key=ingest_policy(settings).pii_key,
    )
    end = START + timedelta(days=config.days)
    seen_outputs = seen_examples = learned = 0
    responses: dict[str, int] = defaultdict(int)
    failed: set[str] = set()
    chunk: list[Record] = []
    n = 0
    next_report = START + timedelta(days=1)
    #: The checker's view of when things happened: batch numbers (``violations``).
    flushes = 0
    emitted: dict[str, int] = {}
    feedback: list[dict[str, Any]] = []
    applied: dict[str, int] = {}

    async def flush() -> None:
        nonlocal seen_outputs, seen_examples, learned, flushes
        flushes += 1
        await runtime.admit(chunk)
        await runtime.run()
        for record in chunk:
            if record.stream == "feedback" and record.value is not None:
                body = orjson.loads(record.value)
                feedback.append(body)
                applied.setdefault(body["feedback_id"], flushes)
        chunk.clear()
        for output in runtime.outputs[seen_outputs:]:
            emitted.setdefault(output.id, flushes)
            if isinstance(output, Action) and output.catalog_version and not output.holdout:
                answer = sim.respond(dump(output))
                responses[str(answer)] += 1
                if answer == "failed":
                    failed.add(output.id)
        seen_outputs = len(runtime.outputs)
        for example in runtime.examples[seen_examples:]:
            trainer.learn(example)
            learned += 1
            if learned % config.snapshot_every == 0:
                for target in specs:
                    scorer.install(trainer.snapshot(target))
        seen_examples = len(runtime.examples)

    for record in sim.records():
        if record.occurred_at >= end:
            break
        n += 1
        stream: Stream = "feedback" if record.topic == "feedback" else "touchpoints"
        chunk.append(Record(stream, record.topic, 0, n, record.key, record.value))
        if len(chunk) >= config.chunk:
            await flush()
        if record.occurred_at >= next_report:
            say(
                f"day {(record.occurred_at - START).days} of {config.days:g}: {n:,} records, "
                f"{len(runtime.outputs):,} outputs, {learned:,} examples learned"
            )
            next_report += timedelta(days=1)
    await flush()
    # past every horizon: the decisions still open are labelled by the clock
    horizon = max(decisions.horizons_ms.values())
    await runtime.advance_all(int(end.timestamp() * 1000) + horizon + 1)
    await flush()
    say(f"{n:,} records in {time.monotonic() - started:.0f} s; measuring")
    result = {
        "seed": config.seed,
        "config": dataclasses.asdict(config),
        "records": n,
        "customers_seen": len(runtime.customers()),
        **quality(runtime.examples),
        **lift(runtime, catalog),
        "policy_violations": violations(
            runtime.outputs, catalog, failed, feedback, emitted, applied
        ),
        "responses": dict(sorted(responses.items())),
        "models": {
            t: {"examples": m.examples, "version": m.version} for t, m in scorer.models.items()
        },
        "seconds": round(time.monotonic() - started, 1),
    }
    return result


def final_labels(examples: list[Example], target: str) -> list[Example]:
    """One example per decision: its label, or its correction."""
    by_id: dict[str, Example] = {}
    for e in examples:
        if e.target == target and (e.correction or e.decision_id not in by_id):
            by_id[e.decision_id] = e
    return sorted(by_id.values(), key=lambda e: (e.at_ms, e.decision_id))


def quality(examples: list[Example]) -> dict[str, Any]:
    labelled = final_labels(examples, "convert")
    half = len(labelled) // 2
    train, test = labelled[:half], labelled[half:]

    def auc(rows: list[Example], score: Callable[[Example], float]) -> float | None:
        value = exact_auc([(score(e), e.label) for e in rows])
        return None if value is None else round(value, 4)

    return {
        "labelled": len(labelled),
        "positives": sum(e.label for e in labelled),
        "auc_online": auc(test, lambda e: e.score),
        "auc_online_all": auc(labelled, lambda e: e.score),
        "auc_lead_score": auc(test, lambda e: e.features.get("lead_score", 0.0)),
        "auc_batch": batch_auc(train, test),
    }


def batch_auc(train: list[Example], test: list[Example]) -> float | None:
    """A batch logistic regression (scikit-learn) on the earlier half, scored on the later."""
    try:
        from sklearn.feature_extraction import DictVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
    except ImportError:
        raise JourneyflowError(
            "evaluate needs scikit-learn for its batch baseline: pip install -e '.[test]'"
        ) from None
    if len({e.label for e in train}) < 2 or not test:
        return None
    model = make_pipeline(
        DictVectorizer(sparse=False), StandardScaler(), LogisticRegression(max_iter=2000)
    )
    model.fit([e.features for e in train], [e.label for e in train])
    scores = model.predict_proba([e.features for e in test])[:, 1]
    value = exact_auc([(float(s), e.label) for s, e in zip(scores, test, strict=True)])
    return None if value is None else round(value, 4)


def lift(runtime: LocalRuntime, catalog: Catalog) -> dict[str, Any]:
    """Intention-to-treat: who bought after the first action chosen for them."""
    first: dict[str, tuple[int, bool]] = {}
    for output in runtime.outputs:
        if isinstance(output, Action) and output.catalog_version:
            at = int(output.decided_at.timestamp() * 1000)
            known = first.get(output.customer_id)
            if known is None or at < known[0]:
                first[output.customer_id] = (at, output.holdout)
    groups: dict[bool, list[bool]] = {True: [], False: []}
    for customer_id, (at, holdout) in first.items():
        journey = runtime.journey_of(customer_id)
        bought = journey is not None and any(o[1] > at for o in journey.orders)
        groups[holdout].append(bought)
    treated, held = groups[False], groups[True]

    def rate(xs: list[bool]) -> float | None:
        return sum(xs) / len(xs) if xs else None

    p1, p0 = rate(treated), rate(held)
    out: dict[str, Any] = {
        "treated_customers": len(treated),
        "holdout_customers": len(held),
        "conversion_treated": None if p1 is None else round(p1, 4),
        "conversion_holdout": None if p0 is None else round(p0, 4),
        "lift": None,
        "lift_ci95": None,
    }
    if p1 is not None and p0 is not None:
        se = math.sqrt(p1 * (1 - p1) / len(treated) + p0 * (1 - p0) / len(held))
        out["lift"] = round(p1 - p0, 4)
        out["lift_ci95"] = [round(p1 - p0 - 1.96 * se, 4), round(p1 - p0 + 1.96 * se, 4)]
    return out


def violations(
    outputs: list[Any],
    catalog: Catalog,
    failed: set[str],
    feedback: Sequence[Mapping[str, Any]] = (),
    emitted: dict[str, int] | None = None,
    applied: dict[str, int] | None = None,
) -> int:
    """Contact-policy violations among the catalog actions (holdout included:
    they follow the same policies; deliveries that failed are no contact), by
    the independent checker (``streams.audit``) in China Standard Time (the
    simulator's). In process there is no changelog to tell when merges and
    purchases became known, so each action is judged against its own
    customer's earlier actions, and the suppression after a purchase is left
    to the unit tests. ``emitted`` (output id) and ``applied`` (feedback id)
    are batch numbers: they stand in for emission and write times, so that
    feedback counts for the actions of later batches."""
    emitted = emitted or {}
    payloads = []
    for output in outputs:
        if isinstance(output, Action):
            payload = dump(output)
            payload["emitted_at"] = _tick(emitted.get(output.id, 0)).isoformat()
            payloads.append(payload)
    known = Knowledge(
        feedback={fid: int(_tick(n).timestamp() * 1000) for fid, n in (applied or {}).items()}
    )
    raw = catalog.model_dump(mode="json")
    reported = reported_outcomes(feedback)
    report = audit(raw, sent_actions(payloads), known, failed, "Asia/Shanghai", reported)
    return len(report.violations)


def _tick(n: int) -> datetime:
    """Batch ``n`` as a time, for the checker's "known before it was emitted"."""
    return START + timedelta(seconds=n)
