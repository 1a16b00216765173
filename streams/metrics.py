"""All Prometheus metrics, built on an injected registry.

Label values are bounded: outcomes, reasons and kinds from closed
vocabularies, rule ids from the loaded rule set, topic names and partition
numbers. Never a customer id.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.events = Counter(
            "journeyflow_events_total",
            "Input events by outcome: processed, duplicate, erased, dead_lettered.",
            ["outcome"],
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
        self.step_seconds = Histogram(
            "journeyflow_step_seconds",
            "Time in the core step plus table write, per event.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.pipeline_seconds = Histogram(
            "journeyflow_pipeline_seconds",
            "From the input record's Kafka timestamp to the journey update.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "journeyflow_consumer_lag_messages",
            "Messages behind the end of each assigned input partition.",
            ["topic", "partition"],
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
        self.feedback = Counter(
            "journeyflow_feedback_total",
            "Action outcomes from journeyflow.feedback, by result: counted, repeated (a "
            "feedback id seen before), unknown (no customer by that id).",
            ["result"],
            registry=registry,
        )
