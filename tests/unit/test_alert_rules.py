"""The Prometheus files in ``deploy/prometheus/`` hold: the config and the
alert rules pass ``promtool check``, every alert fires (and stays quiet) as
its unit tests in ``tests/alerts_test.yml`` say (``promtool test rules``),
the rules read only metrics a worker exports, and the README says what each
alert means."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from streams.metrics import Metrics, catalog

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "alerts.yml"


def alerts() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def promtool(*args: str) -> str:
    tool = shutil.which("promtool")
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing in CI: .ci/run installs Debian's prometheus package")
        pytest.skip("promtool not found: apt-get install --no-install-recommends prometheus")
    done = subprocess.run([tool, *args], capture_output=True, text=True, timeout=120)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    return out


def test_config_and_rules_pass_promtool_check() -> None:
    for config in ("prometheus.yml", "local.yml"):  # compose's, and one for this machine
        promtool("check", "config", str(PROMETHEUS / config))  # its rule files too
    assert f"SUCCESS: {len(alerts())} rules found" in promtool("check", "rules", str(RULES))


def test_every_alert_fires_as_its_unit_tests_say() -> None:
    tests = PROMETHEUS / "tests" / "alerts_test.yml"
    tested = {
        case["alertname"]
        for test in yaml.safe_load(tests.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert {rule["alert"] for rule in alerts()} <= tested, "an alert without a firing test"
    assert "SUCCESS" in promtool("test", "rules", str(tests))


def test_rules_read_only_exported_metrics() -> None:
    exported = set()
    for name, kind, _, _ in catalog(Metrics(CollectorRegistry())):
        exported.add(name)
        if kind == "histogram":
            exported |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    read = {name for rule in alerts() for name in re.findall(r"journeyflow_\w+", rule["expr"])}
    assert read and not read - exported, f"not exported: {sorted(read - exported)}"


def test_the_readme_says_what_each_alert_means() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Alerts", 1)[-1].split("\n## ", 1)[0]
    missing = [rule["alert"] for rule in alerts() if f"`{rule['alert']}`" not in section]
    assert not missing, f"alerts the README's Alerts section does not explain: {missing}"
