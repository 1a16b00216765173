"""docker-compose.yml stays consistent with the settings and the broker we test."""

from __future__ import annotations

from pathlib import Path

import yaml

from streams.broker import KAFKA_VERSION
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


WORKERS = ("worker-1", "worker-2")


def test_compose_parses_with_kafka_workers_simulator_and_monitoring() -> None:
    services = compose()["services"]
    assert set(services) == {"kafka", *WORKERS, "simulator", "prometheus", "grafana"}
    for name in WORKERS:
        assert services[name]["depends_on"]["kafka"]["condition"] == "service_healthy"
    # the simulator waits for a ready worker: it creates the topics
    assert services["simulator"]["depends_on"]["worker-1"]["condition"] == "service_healthy"
    assert "/readyz" in " ".join(services["worker-1"]["healthcheck"]["test"])


def test_the_workers_are_two_of_one_group() -> None:
    services = compose()["services"]
    envs = [services[name]["environment"] for name in WORKERS]
    assert envs[0]["JOURNEYFLOW_APP_ID"] == envs[1]["JOURNEYFLOW_APP_ID"]
    # each its own web host (peers forward profile requests), volume and port
    assert [e["JOURNEYFLOW_WEB_HOST"] for e in envs] == list(WORKERS)
    volumes = [services[name]["volumes"][0].split(":")[0] for name in WORKERS]
    ports = [services[name]["ports"][0].split(":")[0] for name in WORKERS]
    assert len(set(volumes)) == len(set(ports)) == 2
    assert set(volumes) <= set(compose()["volumes"])


def test_simulator_runs_a_real_command_with_real_settings() -> None:
    from click.testing import CliRunner

    from streams.cli import main

    simulator = compose()["services"]["simulator"]
    command = simulator["command"]
    assert command[:2] == ["journeyflow", "simulate"]
    # the options parse (written to stdout instead of Kafka, two events)
    args = [*command[2:], "--output", "-"]
    args[args.index("--count") + 1] = "2"
    result = CliRunner().invoke(main, ["simulate", *args])
    assert result.exit_code == 0, result.output
    assert len(result.output.splitlines()) == 2
    known = {f"JOURNEYFLOW_{name.upper()}" for name in Settings.model_fields}
    assert set(simulator["environment"]) <= known


def test_prometheus_scrapes_both_workers_with_the_alert_rules() -> None:
    prometheus = compose()["services"]["prometheus"]
    mount, target = prometheus["volumes"][0].split(":")[:2]
    folder = ROOT / mount
    config = yaml.safe_load((folder / "prometheus.yml").read_text())
    assert (
        target == "/etc/prometheus"
        and "--config.file=/etc/prometheus/prometheus.yml" in (prometheus["command"])
    )
    assert [(folder / f).is_file() for f in config["rule_files"]] == [True]
    [job] = config["scrape_configs"]
    port = compose()["services"]["worker-1"]["environment"]["JOURNEYFLOW_WEB_PORT"]
    assert job["static_configs"][0]["targets"] == [f"{w}:{port}" for w in WORKERS]


def test_grafana_is_provisioned_with_the_dashboards() -> None:
    grafana = compose()["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    provisioning = ROOT / next(m for m, t in mounts.items() if t == "/etc/grafana/provisioning")
    mounted = next(t for t in mounts.values() if t.startswith("/var/lib/grafana"))
    dashboards = ROOT / next(m for m, t in mounts.items() if t == mounted)
    assert sorted(dashboards.glob("*.json")), "no dashboards to provision"
    providers = [
        p
        for f in sorted((provisioning / "dashboards").glob("*.y*ml"))
        for p in yaml.safe_load(f.read_text())["providers"]
    ]
    paths = {p["options"]["path"] for p in providers}
    assert paths == {mounted}
    sources = [
        d
        for f in sorted((provisioning / "datasources").glob("*.y*ml"))
        for d in yaml.safe_load(f.read_text())["datasources"]
    ]
    assert [s["url"] for s in sources if s["type"] == "prometheus"] == ["http://prometheus:9090"]


def test_worker_variables_are_real_settings() -> None:
    env = compose()["services"]["worker-1"]["environment"]
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
    build = compose()["services"]["worker-1"]["build"]
    assert (ROOT / build["dockerfile"]).is_file()
