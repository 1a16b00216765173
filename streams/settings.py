"""Configuration: one frozen object, read once from ``JOURNEYFLOW_*`` variables.

Every name here is documented in the README and used unchanged in
``docker-compose.yml`` and the Kubernetes manifests (a test checks both).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

#: A key that is only fit for a laptop; the worker warns when it is in use.
DEV_PII_KEY = "journeyflow-dev-only-key-change-me"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JOURNEYFLOW_", frozen=True, extra="ignore")

    kafka_bootstrap: str | None = Field(
        default=None,
        description="Kafka bootstrap servers. Unset: `journeyflow up` starts a local broker; "
        "other commands use 127.0.0.1:9092.",
    )
    app_id: str = Field(
        default="journeyflow",
        description="Faust app id: consumer group and prefix of internal topics.",
    )
    topic_namespace: str = Field(
        default="journeyflow",
        description="Prefix of the public topics (journeyflow.touchpoints, ...).",
    )
    partitions: int = Field(
        default=8,
        ge=1,
        description="Partitions of every topic. Cannot grow later without rebuilding the "
        "tables, so provision for the most workers you will ever run.",
    )
    replication_factor: int = Field(default=1, ge=1, description="Use 3 in production.")
    min_insync_replicas: int | None = Field(default=None, description="Use 2 in production.")
    dlq_retention_hours: int = Field(
        default=168, ge=1, description="How long dead letters (with original bytes) are kept."
    )
    store: Literal["rocksdb", "memory"] = Field(
        default="rocksdb", description="Table store; memory replays the changelog on each start."
    )
    processing_guarantee: Literal["at_least_once"] = Field(
        default="at_least_once",
        description="At least once, with output ids derived from their causes so consumers "
        "deduplicate (README, Delivery). The batch engine does not use Kafka transactions.",
    )
    batch_max_records: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Most input records in one batch (and one fetch): a crash repeats at most "
        "one batch of outputs.",
    )
    batch_max_ms: float = Field(
        default=50.0,
        gt=0,
        description="A batch is closed after stepping it took this long, records left or not, "
        "so outputs of a large fetch are not held back.",
    )
    fetch_max_wait_ms: int = Field(
        default=20,
        ge=1,
        le=1500,
        description="How long the broker holds a fetch with less than fetch_min_bytes to "
        "return: under paced traffic a worker fetches about this often, and each stage's "
        "records wait up to this long (half on average) to be fetched (Faust's own 1,500 ms "
        "held events ~1 s per stage); a worker sends about 1000/this fetches a second short of "
        "a backlog.",
    )
    gc_threshold: int = Field(
        default=50_000,
        ge=0,
        description="Allocations between the interpreter's youngest garbage collections "
        "(CPython's default is 700; 50,000 saved 10-24 % of the batch protocol's CPU in "
        "process); what is loaded at start is frozen out of collections. 0 keeps CPython's "
        "defaults.",
    )
    fetch_min_bytes: int = Field(
        default=1024 * 1024,
        ge=1,
        le=16 * 1024 * 1024,
        description="What the broker waits for (at most fetch_max_wait_ms) before it answers a "
        "fetch. The default is more than arrives within that wait short of a backlog: under "
        "paced traffic a fetch comes back every fetch_max_wait_ms with what arrived meanwhile, "
        "not back to back with a few records each (fewer, larger batches: about a quarter "
        "less CPU at 850 events/s, BENCHMARKS.md), and a backlog still comes back at once. "
        "1 answers as soon as anything arrives.",
    )
    compression: Literal["zstd", "lz4", "gzip", "snappy", "none"] = Field(
        default="zstd",
        description="Compression of every record batch the worker produces (changelogs, "
        "the internal topic, outputs): JSON journeys shrink about 5x with zstd, for a few "
        "microseconds of CPU per record. The broker keeps batches as produced.",
    )
    decoded_cache: int = Field(
        default=10_000,
        ge=0,
        description="Decoded journeys (and as many aliases and decisions records) a worker "
        "keeps between batches, used without reading the store again until the next "
        "rebalance; up to about 20 kB each; and as many internal messages it sent, kept "
        "until it reads them back (not decoded then). 0 decodes every record on every batch.",
    )
    session_timeout_seconds: float = Field(
        default=30.0,
        ge=6,
        description="How long the group waits for a silent worker before moving its "
        "partitions: the pause after a crash.",
    )
    rocksdb_block_cache_mb: int = Field(default=64, ge=1)
    data_dir: Path = Field(
        default=Path(".journeyflow"), description="Local state: table stores, the local broker."
    )
    web_port: int = Field(default=6066, ge=1, le=65535)
    web_bind: str = "0.0.0.0"
    web_host: str = Field(
        default="127.0.0.1",
        description="Host name other workers use to reach this worker's web server.",
    )
    api_key: SecretStr | None = Field(
        default=None, description="When set, ingest and profile endpoints need X-API-Key."
    )
    pii_key_id: str = Field(
        default="dev",
        pattern=r"^[A-Za-z0-9_-]{1,32}$",
        description="Id of the PII hashing key (rotation).",
    )
    pii_key: SecretStr = Field(
        default=SecretStr(DEV_PII_KEY), description="Secret for the keyed hash of phone numbers."
    )
    max_future_skew_seconds: int = Field(
        default=300,
        ge=0,
        description="Reject an occurred_at further than this ahead of the Kafka record time.",
    )
    dedupe_window: int = Field(
        default=256, ge=1, le=4096, description="Recent event ids kept per customer for dedupe."
    )
    max_identifiers: int = Field(
        default=32,
        ge=2,
        le=256,
        description="Identifiers one customer may hold (One-ID); a link beyond it is refused.",
    )
    shared_identifier_partners: int = Field(
        default=20,
        ge=1,
        description="An identifier seen with more distinct identifiers of one type than this "
        "is shared (a shop tablet, a test phone): it stops linking customers.",
    )
    late_after_seconds: int = Field(
        default=3600,
        ge=0,
        description="An event this much older than its partition's event-time clock is late: "
        "it updates the journey but triggers no actions or alerts.",
    )
    too_late_days: int = Field(
        default=30,
        ge=1,
        description="An event this much older than its partition's clock is dead-lettered "
        "(too_late); load history with journeyflow import instead.",
    )
    tick_interval_seconds: float = Field(
        default=5.0,
        ge=0,
        description="How often the leader sends idle ticks to every partition; 0 turns "
        "them off (clocks then move with events only, e.g. for a backfill).",
    )
    idle_advance_delay_seconds: int = Field(
        default=60,
        ge=0,
        description="Allowed lateness: an idle partition's clock moves to the input's low "
        "watermark minus this.",
    )
    timer_resolution_seconds: int = Field(
        default=10, ge=1, description="Width of the due-time buckets of time-based rules."
    )
    rules_file: Path | None = Field(
        default=None, description="JSON file of decision rules; the shipped rules when unset."
    )
    scoring_file: Path | None = Field(
        default=None,
        description="JSON file of lead points, tags and engagement half-life; the shipped "
        "scoring when unset.",
    )
    stage_model: str = Field(
        default="aipl", description="Shipped stage model name, or a path to a JSON file."
    )
    decisions: bool = Field(
        default=True,
        description="Record decisions at decision points, label them from event time and "
        "train the propensity models (issue #10); false turns learning off.",
    )
    actions: bool = Field(
        default=True,
        description="Choose a next-best-action from the action catalog at each decision, "
        "under its contact policies, with its holdout (needs JOURNEYFLOW_DECISIONS).",
    )
    catalog_file: Path | None = Field(
        default=None,
        description="JSON file of the action catalog and contact policies; the shipped "
        "catalog when unset.",
    )
    convert_horizon_hours: float = Field(
        default=72.0,
        gt=0,
        le=24 * 90,
        description="A decision is labelled converted when a transaction follows within this "
        "much event time.",
    )
    churn_horizon_days: float = Field(
        default=14.0,
        gt=0,
        le=365,
        description="A buyer's decision is labelled churned when no transaction follows "
        "within this much event time.",
    )
    decision_spacing_minutes: int = Field(
        default=60,
        ge=0,
        description="A customer gets a new decision at most this often (event time).",
    )
    model_min_examples: int = Field(
        default=200,
        ge=0,
        description="Labelled examples a model learns from before it is ready: action "
        "choice uses a model's scores only then (the lead score before). Decisions are "
        "recorded and scored either way.",
    )
    snapshot_every_examples: int = Field(
        default=500,
        ge=1,
        description="The trainer publishes a model snapshot after this many new examples ...",
    )
    snapshot_interval_seconds: float = Field(
        default=30.0,
        gt=0,
        description="... or this long after the last one, whichever comes first.",
    )
    log_level: str = "info"
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="json: one JSON object per log line (ts, level, logger, message, and "
        "topic, partition, offset where a line is about one), for a log pipeline.",
    )

    @property
    def bootstrap(self) -> str:
        return self.kafka_bootstrap or "127.0.0.1:9092"

    def topic(self, name: str) -> str:
        """Full name of a public topic, e.g. ``topic('actions')``."""
        return f"{self.topic_namespace}.{name}"


def load_settings(**overrides: object) -> Settings:
    """Read the environment once; ``overrides`` win (used by the CLI options)."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
