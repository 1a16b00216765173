"""docker-compose.yml stays consistent with the settings and the broker we test."""

from __future__ import annotations

from pathlib import Path

import yaml

from streams.broker import KAFKA_VERSION
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_parses_with_kafka_and_worker() -> None:
    services = compose()["services"]
    assert {"kafka", "worker"} <= set(services)
    assert services["worker"]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_worker_variables_are_real_settings() -> None:
    env = compose()["services"]["worker"]["environment"]
    known = {f"JOURNEYFLOW_{name.upper()}" for name in Settings.model_fields}
    names = set(env)
    assert names, "the worker must be configured through JOURNEYFLOW_* variables"
    assert names <= known, f"not settings: {sorted(names - known)}"
    settings = Settings(
        **{k.removeprefix("JOURNEYFLOW_").lower(): v for k, v in env.items() if "${" not in str(v)}
    )
    assert settings.kafka_bootstrap == "kafka:9092"
    assert settings.web_port == 6066


def test_broker_matches_the_one_the_tests_run() -> None:
    kafka = compose()["services"]["kafka"]
    assert kafka["image"] == f"apache/kafka:{KAFKA_VERSION}"
    env = kafka["environment"]
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert "broker" in env["KAFKA_PROCESS_ROLES"] and "controller" in env["KAFKA_PROCESS_ROLES"]


def test_dockerfile_exists_for_the_worker_build() -> None:
    build = compose()["services"]["worker"]["build"]
    assert (ROOT / build["dockerfile"]).is_file()
