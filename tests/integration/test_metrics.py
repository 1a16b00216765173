"""A live worker's ``/metrics`` is what Prometheus expects: ``promtool check
metrics`` (Prometheus's own linter) finds nothing wrong in it after real
traffic, every metric of the README's catalog is exported, and no
identifier the traffic carried appears in it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import Namespace, http_get, metric_samples
from prometheus_client import CollectorRegistry
from test_recovery import fed, identifiers

from schemas.vocabulary import CHANNELS
from streams.metrics import Metrics, catalog

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def test_a_live_worker_s_metrics_pass_promtool(namespace: Namespace, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not found: install Debian's prometheus package (.ci/run does)")
    worker, records, book = fed(namespace, tmp_path)
    assert book["processed"] and book["dead_lettered"]  # both kinds of series are there

    status, text = http_get(f"{worker.url}/metrics")
    assert status == 200
    lint = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60
    )
    problems = (lint.stdout + lint.stderr).decode()
    assert lint.returncode == 0 and not problems.strip(), problems

    exported = {line.split()[2] for line in text.splitlines() if line.startswith("# HELP ")}
    missing = [name for name, *_ in catalog(Metrics(CollectorRegistry())) if name not in exported]
    assert not missing, f"in the catalog, not exported: {missing}"
    assert "journeyflow_dead_letters_total{reason=" in text
    # inputs by channel add up to the outcomes, channels from the vocabulary
    samples = metric_samples(worker.url, "journeyflow_inputs_total", "journeyflow_events_total")
    by_channel: dict[str, float] = {}
    for sample, value in samples.items():
        labels = dict(re.findall(r'(\w+)="([^"]*)"', sample))
        if sample.startswith("journeyflow_inputs_total"):
            assert labels["channel"] in CHANNELS, sample
            by_channel[labels["outcome"]] = by_channel.get(labels["outcome"], 0) + value
    for outcome in ("processed", "duplicate"):
        total = samples[f'journeyflow_events_total{{outcome="{outcome}"}}']
        assert by_channel[outcome] == total > 0, (outcome, by_channel)
    # each touchpoint admitted and applied once: one latency per hop each;
    # each output an event decided one too (those a timer fired have none)
    hops = metric_samples(worker.url, "journeyflow_latency_seconds_count")
    decided = hops.pop('journeyflow_latency_seconds_count{hop="output"}', 0)
    applied = sum(by_channel.values())
    assert hops == {
        'journeyflow_latency_seconds_count{hop="admission"}': applied,
        'journeyflow_latency_seconds_count{hop="journey"}': applied,
    }
    outputs = sum(metric_samples(worker.url, "journeyflow_outputs_total").values())
    assert 0 < decided <= outputs

    # label values are bounded: no identifier of the traffic, typed or raw
    who = identifiers(records)
    assert len(who) > 100
    values = [i.partition(":")[2] for i in who]
    leaked = [v for v in values if len(v) >= 6 and v in text]
    assert not leaked, f"identifiers in /metrics: {leaked[:5]}"
