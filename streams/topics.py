"""Every topic journeyflow reads or writes, declared once.

Public topics are ``<namespace>.<name>`` (namespace ``journeyflow`` by
default); internal ones are prefixed by the app id. All are created
explicitly with the same partition count (auto-creation is off on the
broker), because the journey table is co-partitioned with its input; the
trainer's two topics have one partition (nothing is co-partitioned with them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.settings import Settings

HOUR_MS = 3_600_000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    purpose: str
    key: str
    config: dict[str, str] = field(default_factory=dict)
    #: Partitions when not the settings' count (a topic no table is co-partitioned with).
    partitions: int | None = None

    def partition_count(self, settings: Settings) -> int:
        return settings.partitions if self.partitions is None else self.partitions


@dataclass(frozen=True)
class Topics:
    touchpoints: TopicSpec
    keyed: TopicSpec
    dlq: TopicSpec
    actions: TopicSpec
    holdout: TopicSpec
    alerts: TopicSpec
    live_triggers: TopicSpec
    merges: TopicSpec
    feedback: TopicSpec
    journeys_changelog: TopicSpec
    timers_changelog: TopicSpec
    aliases_changelog: TopicSpec
    decisions_changelog: TopicSpec
    examples: TopicSpec
    models: TopicSpec

    def all(self) -> list[TopicSpec]:
        return [
            self.touchpoints,
            self.keyed,
            self.dlq,
            self.actions,
            self.holdout,
            self.alerts,
            self.live_triggers,
            self.merges,
            self.feedback,
            self.journeys_changelog,
            self.timers_changelog,
            self.aliases_changelog,
            self.decisions_changelog,
            self.examples,
            self.models,
        ]

    def outputs(self) -> list[TopicSpec]:
        return [self.actions, self.holdout, self.alerts, self.live_triggers]


def topics_for(settings: Settings) -> Topics:
    t = settings.topic
    return Topics(
        touchpoints=TopicSpec(t("touchpoints"), "touchpoint events in (contract v1)", "any"),
        keyed=TopicSpec(
            f"{settings.app_id}-touchpoints-by-customer",
            "internal: admitted events (PII hashed) and One-ID messages, keyed by identifier",
            "identifier / customer id",
        ),
        dlq=TopicSpec(
            t("dlq"),
            "dead letters: reason, source position, original bytes",
            "event_id when known",
            {"retention.ms": str(settings.dlq_retention_hours * HOUR_MS)},
        ),
        actions=TopicSpec(
            t("actions"), "next-best-actions for marketing automation", "customer id"
        ),
        holdout=TopicSpec(
            t("holdout"),
            "what holdout customers would have received: never deliver these",
            "customer id",
        ),
        alerts=TopicSpec(t("alerts"), "alerts for store guides, sales reps, CS", "routing key"),
        live_triggers=TopicSpec(
            t("live-triggers"), "real-time cues for livestream teams", "live room id"
        ),
        merges=TopicSpec(
            t("merges"), "One-ID merges (survivor, absorbed ids, cause)", "survivor id"
        ),
        feedback=TopicSpec(t("feedback"), "action outcomes back from automation", "customer id"),
        # Faust would create these itself; creating them up front (and waiting for
        # their leaders) avoids a start-up race in which an agent saw a changelog
        # with no partitions yet and stopped with PartitionsMismatch.
        journeys_changelog=TopicSpec(
            f"{settings.app_id}-journeys-changelog",
            "internal: journey table changelog",
            "customer id",
            {"cleanup.policy": "compact"},
        ),
        timers_changelog=TopicSpec(
            f"{settings.app_id}-timers-changelog",
            "internal: clocks and due-time index changelog",
            "clock or bucket key",
            {"cleanup.policy": "compact"},
        ),
        aliases_changelog=TopicSpec(
            f"{settings.app_id}-aliases-changelog",
            "internal: One-ID alias table changelog",
            "identifier",
            {"cleanup.policy": "compact"},
        ),
        decisions_changelog=TopicSpec(
            f"{settings.app_id}-decisions-changelog",
            "internal: journeys' open decisions table changelog",
            "customer id",
            {"cleanup.policy": "compact"},
        ),
        # One partition each: one trainer learns from every example in order,
        # and every worker reads every snapshot.
        examples=TopicSpec(
            f"{settings.app_id}-examples",
            "internal: labelled decisions (features, score, label) for the trainer",
            "decision id",
            {"retention.ms": str(7 * 24 * HOUR_MS)},
            partitions=1,
        ),
        models=TopicSpec(
            f"{settings.app_id}-models",
            "internal: model snapshots, the newest per target kept",
            "target (convert, churn)",
            {"cleanup.policy": "compact", "max.message.bytes": str(8 * 1024 * 1024)},
            partitions=1,
        ),
    )
