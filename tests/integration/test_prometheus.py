"""The alert rules and dashboards against a real Prometheus (Debian's
package): it scrapes a worker under traffic that makes it decide, learn and
dead-letter, loads ``deploy/prometheus/alerts.yml``, evaluates every rule
without error, and every series selector the rules read returns data. A rule
that watched a metric the worker does not export, or under other labels,
would never fire. Every dashboard query (``deploy/grafana/build.py``)
evaluates too, and every metric the dashboards read has series: the traffic
also shares a phone too widely, posts an event over HTTP and reports an
action delivered, so that each has something to count."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
import yaml
from conftest import Namespace, eventually, http_get, http_post, metric_samples
from kafka_io import produce, read_topic
from test_actions import catalog_file
from test_learning import LEARNING, touch, traffic

from streams import broker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
GRAFANA_BUILD = ROOT / "deploy" / "grafana" / "build.py"
#: A series selector in a PromQL expression: a metric name and its matchers.
SELECTOR = re.compile(r"\b((?:journeyflow_\w+|up)(?:\{[^}]*\})?)")


#: Metrics the dashboards read that this test's traffic does not make (each
#: is exported from the first time it counts something). None: the traffic
#: makes every one.
NOT_IN_THIS_TRAFFIC: set[str] = set()


def dashboard_queries() -> list[tuple[str, str, str]]:
    """``(dashboard, panel, PromQL)`` of every panel (``deploy/grafana/build.py``)."""
    spec = importlib.util.spec_from_file_location("grafana_build", GRAFANA_BUILD)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    queries: list[tuple[str, str, str]] = module.expressions()
    return queries


def shared_phone(start: datetime) -> list[tuple[bytes, bytes]]:
    """Eight chatbot users giving the same phone: shared after three."""
    return [
        (
            f"bot:t-{i}".encode(),
            orjson.dumps(
                {
                    "event_id": f"t-{i}",
                    "event_type": "chat.message",
                    "channel": "chatbot",
                    "occurred_at": (start + timedelta(seconds=i)).isoformat(),
                    "identities": {"phone": "13800000000", "chatbot_user_id": f"bot:t-{i}"},
                    "properties": {"text": "test", "sentiment": 0.0},
                }
            ),
        )
        for i in range(8)
    ]


def selectors(expr: str) -> set[str]:
    return {s for s in SELECTOR.findall(expr) if not s.startswith("up") or "{" in s}


def test_prometheus_scrapes_a_worker_and_every_rule_reads_live_series(
    namespace: Namespace, tmp_path: Path
) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus not found: install Debian's prometheus package (.ci/run does)")
    catalog, _ = catalog_file(tmp_path)  # a holdout large enough to convert in this traffic
    worker = namespace.worker(
        tmp_path,
        JOURNEYFLOW_CATALOG_FILE=str(catalog),
        JOURNEYFLOW_SHARED_IDENTIFIER_PARTNERS="3",
        **LEARNING,
    ).start()
    start = datetime.now(UTC) - timedelta(hours=2)
    records, _ = traffic(start)
    produce(
        namespace.bootstrap,
        namespace.topic("touchpoints"),
        [
            *records,
            (b"broken", b'{"event_id": "x", '),  # a dead letter
            *shared_phone(start),  # a phone too many people share
        ],
    )
    # an event over HTTP, and marketing automation reporting a delivery
    status, _ = http_post(f"{worker.url}/v1/events", touch("http-1", "live.like", 9_999, start))
    assert status == 202
    action = eventually(
        lambda: next(iter(read_topic(namespace.bootstrap, namespace.topic("actions"), 5)), None),
        timeout=120,
        what="an action",
    )
    sent = orjson.loads(action.value)
    delivered = {
        "feedback_id": "fb-1",
        "action_id": sent["id"],
        "customer_id": sent["customer_id"],
        "outcome": "delivered",
        "occurred_at": sent["not_before"],
    }
    produce(namespace.bootstrap, namespace.topic("feedback"), [(None, orjson.dumps(delivered))])
    # decisions labelled, a model trained, its snapshot and quality in use
    eventually(
        lambda: (
            metric_samples(worker.url, "journeyflow_model_quality").get(
                'journeyflow_model_quality{metric="auc",target="convert"}'
            )
            is not None
        ),
        timeout=240,
        what=lambda: f"a model with a quality in use; {worker.log_tail(20)}",
    )

    port = broker.free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(RULES)],
                "scrape_configs": [
                    {
                        "job_name": "journeyflow",
                        "static_configs": [{"targets": [f"127.0.0.1:{worker.web_port}"]}],
                    }
                ],
            }
        )
    )
    log = (tmp_path / "prometheus.log").open("wb")
    prometheus = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    api = f"http://127.0.0.1:{port}/api/v1"

    def query(expr: str) -> list[dict]:
        status, body = http_get(f"{api}/query?query={urllib.parse.quote(expr)}")
        assert status == 200 and body["status"] == "success", (expr, body)
        return body["data"]["result"]

    def prometheus_log() -> str:
        return (tmp_path / "prometheus.log").read_text(errors="replace")[-3000:]

    try:

        def answers() -> bool:
            try:
                return http_get(f"{api}/query?query=up")[0] == 200
            except OSError:  # not listening yet
                return prometheus.poll() is not None  # exited: fail below, not time out

        eventually(
            answers,
            timeout=60,
            what=lambda: f"Prometheus up; {prometheus_log()}",
        )
        assert prometheus.poll() is None, f"Prometheus exited: {prometheus_log()}"
        eventually(
            lambda: [s["value"][1] for s in query('up{job="journeyflow"}')] == ["1"],
            timeout=60,
            what=lambda: f"the worker scraped; {prometheus_log()}",
        )

        # every rule evaluated, none with an error
        def evaluated() -> list[dict] | None:
            _, body = http_get(f"{api}/rules")
            rules = [r for g in body["data"]["groups"] for r in g["rules"]]
            done = all(r.get("lastEvaluation", "0001").startswith("2") for r in rules)
            return rules if rules and done else None

        rules = eventually(evaluated, timeout=60, what="every rule evaluated once")
        alerts = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
        assert {r["name"] for r in rules} == {a["alert"] for a in alerts}
        assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []

        # every series a rule reads is there (a rate over a counter needs two scrapes)
        wanted = sorted({s for a in alerts for s in selectors(a["expr"])})
        assert len(wanted) >= 8

        def missing() -> list[str]:
            return [s for s in wanted if not query(s)]

        eventually(lambda: not missing(), timeout=60, what=lambda: f"series for {missing()}")
        for alert in alerts:  # and each whole expression evaluates
            query(alert["expr"])

        # the dashboards' queries evaluate, and every metric they read is
        # there, but those only some traffic makes (listed, with why)
        panels = dashboard_queries()
        assert len(panels) > 40
        for board, panel, expr in panels:
            try:
                query(expr)
            except AssertionError as exc:
                raise AssertionError(f"{board} / {panel}: {expr}") from exc
        read = {m for _, _, expr in panels for m in re.findall(r"journeyflow_\w+", expr)}
        read = {re.sub(r"_(bucket|sum|count)$", "", m) for m in read}
        absent = sorted(m for m in read if not query(f"count({{__name__=~'{m}(_bucket)?'}})"))
        assert absent == sorted(NOT_IN_THIS_TRAFFIC & read), absent
    finally:
        prometheus.terminate()
        try:
            prometheus.wait(timeout=30)
        except subprocess.TimeoutExpired:
            prometheus.kill()
        log.close()
