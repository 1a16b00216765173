"""All Prometheus metrics, built on an injected registry.

Label values are bounded: outcomes, reasons and kinds from closed
vocabularies, rule ids from the loaded rule set, topic names and partition
numbers. Never a customer id.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

if TYPE_CHECKING:
    from streams.batch import Batch

#: Outcomes of an applied input event (``journeyflow_events_total``).
_OUTCOMES = ("processed", "duplicate", "redelivered", "erased", "dead_lettered")

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
#: Hops also take longer: a delivery by marketing automation, a lagging worker.
_HOP_BUCKETS = (*_LATENCY_BUCKETS, 10, 30, 60, 300, 900, 3600)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        #: Journey partitions with an event-time clock shown.
        self._clocks: set[int] = set()
        self.events = Counter(
            "journeyflow_events_total",
            "Input events by outcome: processed, duplicate, redelivered (read again after a "
            "restart or rebalance: changes nothing), erased, dead_lettered.",
            ["outcome"],
            registry=registry,
        )
        self.inputs = Counter(
            "journeyflow_inputs_total",
            "Touchpoints applied to journeys, by channel (livestream, wechat_group, store, "
            "chatbot, mini_program, ecommerce, ad) and outcome (processed, duplicate, "
            "redelivered, erased); inputs dead-lettered are in journeyflow_dead_letters_total.",
            ["channel", "outcome"],
            registry=registry,
        )
        self.stage_transitions = Counter(
            "journeyflow_stage_transitions_total",
            "Journeys that changed stage (AIPL by default: JOURNEYFLOW_STAGE_MODEL), by "
            "from_stage and to_stage: forward with events, back by the stage model's decay "
            "rules; from_stage none is a journey's first stage, to_stage none a journey gone "
            "(erased, or merged into another).",
            ["from_stage", "to_stage"],
            registry=registry,
        )
        self.customers = Gauge(
            "journeyflow_customers",
            "Customers in each stage (AIPL by default: JOURNEYFLOW_STAGE_MODEL) in the journey "
            "partitions this worker holds (sum over workers: all customers), as their journeys "
            "are written: a decay due while a customer is idle shows with the customer's next "
            "write (the profile's stage too). A count per partition, in the timers table, kept "
            "by each batch's stage moves: a worker killed while sending a batch's changes can "
            "leave it off by that batch's moves, and tables written before this count was kept "
            "make it wrong.",
            ["stage"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "journeyflow_dead_letters_total",
            "Inputs sent to the DLQ, by reason.",
            ["reason"],
            registry=registry,
        )
        self.outputs = Counter(
            "journeyflow_outputs_total",
            "Outputs emitted, by kind and rule.",
            ["kind", "rule"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "journeyflow_batch_seconds",
            "Time to apply one batch: step, send with acks, write tables.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_records = Histogram(
            "journeyflow_batch_records",
            "Input records per batch.",
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
            registry=registry,
        )
        self.latency = Histogram(
            "journeyflow_latency_seconds",
            "Time per hop: admission, from a touchpoint's Kafka timestamp until its re-keyed "
            "record is acknowledged; journey, from the re-keyed record until its journey is "
            "written; output, from the re-keyed record until each output it decided is "
            "acknowledged (before the journey is written; for an event One-ID routed on, its "
            "last record; outputs a timer fired have none); delivered, from a catalog action's "
            "not_before until the delivery its feedback reports (occurred_at: how long "
            "marketing automation took).",
            ["hop"],
            buckets=_HOP_BUCKETS,
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "journeyflow_consumer_lag_messages",
            "Messages behind the end of each assigned input partition.",
            ["topic", "partition"],
            registry=registry,
        )
        self.rebalances = Counter(
            "journeyflow_rebalances_total",
            "Times this worker's consumer was positioned for a new assignment: once at start "
            "and after each rebalance, when the partitions it was given have their tables "
            "recovered.",
            registry=registry,
        )
        self.restored_records = Counter(
            "journeyflow_restored_records_total",
            "Changelog records this worker restored into its tables, recovering partitions "
            "it was given (after a start on an empty or stale folder, or a rebalance).",
            registry=registry,
        )
        self.http_events = Counter(
            "journeyflow_http_events_total",
            "Events received over POST /v1/events, by result.",
            ["result"],
            registry=registry,
        )
        self.ready = Gauge(
            "journeyflow_ready",
            "1 when the worker's tables are recovered and it serves traffic.",
            registry=registry,
        )
        self.partition_clock = Gauge(
            "journeyflow_partition_event_time_seconds",
            "Event-time clock of each journey partition this worker owns (epoch seconds).",
            ["partition"],
            registry=registry,
        )
        self.identity_messages = Counter(
            "journeyflow_identity_messages_total",
            "One-ID protocol messages sent, by kind (route, apply, link, absorb, propose, "
            "accepted, refused, fold, repoint).",
            ["kind"],
            registry=registry,
        )
        self.identity_refusals = Counter(
            "journeyflow_identity_refusals_total",
            "Links One-ID refused, by reason: conflict_member_id, conflict_wechat_unionid, "
            "too_many_identifiers, shared (an identifier seen with too many people).",
            ["reason"],
            registry=registry,
        )
        self.shared_identifiers = Counter(
            "journeyflow_shared_identifiers_total",
            "Identifiers found shared, by identifier type (phone, member_id, ...): seen with "
            "more people than JOURNEYFLOW_SHARED_IDENTIFIER_PARTNERS (a shop tablet, a test "
            "phone), so they link no one from then on; each is also a shared_identifier alert "
            "on journeyflow.alerts.",
            ["type"],
            registry=registry,
        )
        self.merges = Counter(
            "journeyflow_merges_total",
            "Customers merged into another (published on the merges topic).",
            registry=registry,
        )
        self.late_events = Counter(
            "journeyflow_late_events_total",
            "Events older than their partition's clock by more than "
            "JOURNEYFLOW_LATE_AFTER_SECONDS: applied, but they decided nothing.",
            registry=registry,
        )
        self.nba = Counter(
            "journeyflow_nba_total",
            "Next-best-action arbitration at decision points: sent (on journeyflow.actions), "
            "holdout (logged on journeyflow.holdout, not sent), left_out_<reason> (a catalog "
            "action not eligible or stopped by a contact policy, e.g. left_out_day_cap).",
            ["result"],
            registry=registry,
        )
        self.feedback = Counter(
            "journeyflow_feedback_total",
            "Action outcomes from journeyflow.feedback, by result: counted, repeated (a "
            "feedback id seen before), unknown (no customer by that id).",
            ["result"],
            registry=registry,
        )

        self.lift_labels = Counter(
            "journeyflow_lift_labels_total",
            "Conversion labels of the decisions next-best-action arbitrated at, action chosen "
            "or not (intention to treat), by the customer's group (treated: what is chosen is "
            "sent; holdout: logged, not sent) and label: converted (an order within the "
            "convert horizon), not_converted (none by then), corrected (a not_converted label "
            "a late order turned). Conversion per group is (converted + corrected) / "
            "(converted + not_converted); the measured lift is treated's minus holdout's.",
            ["group", "label"],
            registry=registry,
        )
        self.decisions = Counter(
            "journeyflow_decisions_total",
            "Decisions at decision points, by result: recorded (scored, waiting for its "
            "label), dropped (an open decision pushed out unlabelled by a newer one, "
            "JourneyLimits.decisions per customer: learning never sees it).",
            ["result"],
            registry=registry,
        )
        self.examples = Counter(
            "journeyflow_examples_total",
            "Decisions labelled (sent to the trainer), by target and label; corrections "
            "are late transactions that turned a clock label round.",
            ["target", "label"],
            registry=registry,
        )
        self.model_version = Gauge(
            "journeyflow_model_version",
            "Version of the model snapshot this worker scores with, by target (0: untrained).",
            ["target"],
            registry=registry,
        )
        self.model_examples = Gauge(
            "journeyflow_model_examples",
            "Labelled examples the model in use has learned from, by target.",
            ["target"],
            registry=registry,
        )
        self.model_ready = Gauge(
            "journeyflow_model_ready",
            "1 when the model in use has learned JOURNEYFLOW_MODEL_MIN_EXAMPLES examples.",
            ["target"],
            registry=registry,
        )
        self.model_snapshot_age = Gauge(
            "journeyflow_model_snapshot_age_seconds",
            "Seconds since the model in use was snapshotted by the trainer, by target.",
            ["target"],
            registry=registry,
        )
        self.model_quality = Gauge(
            "journeyflow_model_quality",
            "Progressive validation of the model in use (score at decision time against the "
            "later label, the trainer's newest window): metric auc, log_loss or "
            "calibration_error, by target.",
            ["target", "metric"],
            registry=registry,
        )
        self.trainer_examples = Counter(
            "journeyflow_trainer_examples_total",
            "Labelled examples the trainer on this worker learned, by target.",
            ["target"],
            registry=registry,
        )
        self.snapshots = Counter(
            "journeyflow_model_snapshots_total",
            "Model snapshots this worker published (trainer) or swapped in (scorer), by "
            "target and what: published, installed.",
            ["target", "what"],
            registry=registry,
        )

    def hold(
        self,
        lags: dict[tuple[str, int], int],
        journey_partitions: set[int],
        customers: Mapping[str, int] | None = None,
    ) -> None:
        """What this worker holds now (refreshed every few seconds): the lag of
        each assigned partition, ``(topic, partition) -> records``, the
        event-time clocks of only the journey partitions it applies, and the
        customers of those partitions by stage. A partition a rebalance moved
        away no longer shows its last values here while its new owner reports
        its own (sums would count it twice)."""
        self.consumer_lag.clear()
        for (topic, partition), lag in lags.items():
            self.consumer_lag.labels(topic, str(partition)).set(lag)
        self.customers.clear()
        for stage, n in (customers or {}).items():
            self.customers.labels(stage).set(max(0, n))
        for partition in self._clocks - journey_partitions:
            self.partition_clock.remove(str(partition))
        self._clocks &= journey_partitions

    def record_batch(self, batch: Batch, now_s: float) -> None:
        """Count what one applied batch did (``now_s``: wall clock, for latency)."""
        for name, n in batch.counts.items():
            if name in _OUTCOMES:
                self.events.labels(name).inc(n)
            elif name.startswith("dlq_"):
                self.dead_letters.labels(name[4:]).inc(n)
            elif name.startswith("refused_"):
                self.identity_refusals.labels(name[8:]).inc(n)
            elif name.startswith("feedback_"):
                self.feedback.labels(name[9:]).inc(n)
            elif name.startswith("nba_"):
                self.nba.labels(name[4:]).inc(n)
            elif name.startswith("decision_"):
                self.decisions.labels(name[9:]).inc(n)
            elif name == "late":
                self.late_events.inc(n)
        for (channel, outcome), n in batch.inputs.items():
            self.inputs.labels(channel, outcome).inc(n)
        for view in batch.views.values():
            for (before, after), n in view.stage_moves.items():
                self.stage_transitions.labels(before, after).inc(n)
        for (kind, rule), n in collections.Counter(
            (o.kind, o.rule_id) for o in batch.outputs
        ).items():
            self.outputs.labels(kind, rule).inc(n)
        for id_type, n in collections.Counter(
            o.customer_id.partition(":")[0]
            for o in batch.outputs
            if o.rule_id == "shared_identifier"
        ).items():
            self.shared_identifiers.labels(id_type).inc(n)
        if batch.merges:
            self.merges.inc(len(batch.merges))
        for (target, label), n in collections.Counter(
            (e.target, "correction" if e.correction else str(e.label).lower())
            for e in batch.examples
        ).items():
            self.examples.labels(target, label).inc(n)
        for (group, label), n in collections.Counter(
            # a convert correction is always a late order (labels.on_transaction)
            (e.group, "corrected" if e.correction else "converted" if e.label else "not_converted")
            for e in batch.examples
            if e.group is not None and e.target == "convert"
        ).items():
            self.lift_labels.labels(group, label).inc(n)
        for message_kind, n in collections.Counter(msg.kind for _, msg in batch.messages).items():
            self.identity_messages.labels(message_kind).inc(n)
        sent_s = now_s if batch.sent is None else batch.sent
        for hop, stamps, until_s in (
            ("admission", batch.admitted_timestamps, now_s),
            ("journey", batch.applied_timestamps, now_s),
            ("output", batch.output_timestamps, sent_s),
        ):
            observe = self.latency.labels(hop).observe
            for stamp_ms in stamps:
                observe(max(0.0, until_s - stamp_ms / 1000))
        if batch.delivered_after_ms:
            observe = self.latency.labels("delivered").observe
            for after_ms in batch.delivered_after_ms:
                observe(after_ms / 1000)
        for partition, clock_ms in batch.clocks.items():
            self.partition_clock.labels(str(partition)).set(clock_ms / 1000)
            self._clocks.add(partition)
        self.batch_records.observe(len(batch.records))
        if batch.started is not None:
            self.batch_seconds.observe(time.perf_counter() - batch.started)


def catalog(metrics: Metrics) -> list[tuple[str, str, tuple[str, ...], str]]:
    """Every metric a worker exports: ``(name, type, labels, meaning)``, the
    name as Prometheus scrapes it (a counter's with ``_total``; a histogram's
    also gives ``_bucket``, ``_sum`` and ``_count`` series). The README's
    metrics catalog is this table (``python -m streams.metrics``;
    ``tests/unit/test_readme.py`` keeps the two the same).

    >>> rows = {name: row for name, *row in catalog(Metrics(CollectorRegistry()))}
    >>> rows["journeyflow_events_total"][:2]
    ['counter', ('outcome',)]
    >>> rows["journeyflow_batch_seconds"][:2]
    ['histogram', ()]
    """
    rows = []
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            (family,) = value.describe()
            name = family.name + ("_total" if family.type == "counter" else "")
            # _labelnames: prometheus_client keeps a metric's label names there
            rows.append((name, family.type, tuple(value._labelnames), family.documentation))
    return rows


def catalog_markdown() -> str:
    """The catalog as the README's Markdown table."""
    lines = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    for name, kind, labels, meaning in catalog(Metrics(CollectorRegistry())):
        shown = ", ".join(f"`{label}`" for label in labels) or "–"
        lines.append(f"| `{name}` | {kind} | {shown} | {meaning} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(catalog_markdown())
