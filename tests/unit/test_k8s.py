"""The Kubernetes manifests in ``deploy/k8s/`` are valid and fit together:
every resource validates strictly against the Kubernetes API schemas
(``kubernetes-validate``, offline), the ServiceMonitor finds the workers'
``/metrics``, selectors find the pods, and the settings they set are the
worker's own and accepted by it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
#: The oldest Kubernetes the manifests are for (README, Running in a cluster), and the newest known.
VERSIONS = ("1.30.0", kubernetes_validate.latest_version())


def resources() -> list[dict[str, Any]]:
    """What ``kubectl apply -f deploy/k8s/`` applies, and the Secret's template
    (in a folder of its own, so that it is never applied over the real one)."""
    files = [*sorted(K8S.glob("*.yaml")), *sorted((K8S / "secret-template").glob("*.yaml"))]
    docs = [d for f in files for d in yaml.safe_load_all(f.read_text())]
    return [d for d in docs if d]


def test_applying_the_folder_leaves_the_secret_alone() -> None:
    applied = [d for f in K8S.glob("*.y*ml") for d in yaml.safe_load_all(f.read_text()) if d]
    assert "Secret" not in {d["kind"] for d in applied}


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [r for r in resources() if r["kind"] == kind and name in (None, r["metadata"]["name"])]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("version", VERSIONS)
def test_every_resource_validates_strictly(version: str) -> None:
    checked = []
    for resource in resources():
        if resource["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: test_the_service_monitor_finds_the_workers
        kubernetes_validate.validate(resource, version, strict=True)
        checked.append(resource["kind"])
    assert sorted(checked) == [
        "ConfigMap",
        "PodDisruptionBudget",
        "Secret",
        "Service",
        "Service",
        "StatefulSet",
    ]


def test_a_misspelt_field_is_caught() -> None:
    pdb = one("PodDisruptionBudget")
    pdb["spec"]["maxUnavailabel"] = pdb["spec"].pop("maxUnavailable")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pdb, VERSIONS[0], strict=True)


def test_selectors_find_the_worker_pods() -> None:
    workers = one("StatefulSet", "journeyflow")
    pod = workers["spec"]["template"]["metadata"]["labels"]
    assert matches(workers["spec"]["selector"]["matchLabels"], pod)
    peers = one("Service", workers["spec"]["serviceName"])
    assert peers["spec"]["clusterIP"] == "None"  # headless: a DNS name per pod
    for service in (peers, one("Service", "journeyflow")):
        assert matches(service["spec"]["selector"], pod)
    assert matches(one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"], pod)


def test_the_service_monitor_finds_the_workers() -> None:
    monitor = one("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    scraped = [
        s
        for s in resources()
        if s["kind"] == "Service"
        and matches(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
    ]
    # one service (two would scrape every pod twice), listing every pod, ready or not
    assert [s["metadata"]["name"] for s in scraped] == ["journeyflow-workers"]
    assert scraped[0]["spec"]["publishNotReadyAddresses"] is True
    ports = {p["name"] for p in scraped[0]["spec"]["ports"]}
    assert [(e["port"], e["path"]) for e in monitor["spec"]["endpoints"]] == [("http", "/metrics")]
    assert "http" in ports


def test_the_worker_accepts_the_settings_and_they_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    config = one("ConfigMap", "journeyflow-settings")["data"]
    secret = one("Secret", "journeyflow-secrets")["stringData"]
    workers = one("StatefulSet", "journeyflow")
    [container] = workers["spec"]["template"]["spec"]["containers"]
    fixed = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    names = {*config, *secret, *fixed}
    unknown = [
        n
        for n in names
        if not n.startswith("JOURNEYFLOW_")
        or n.removeprefix("JOURNEYFLOW_").lower() not in Settings.model_fields
    ]
    assert unknown == [], "not a setting of the worker"
    sources = {c.get("configMapRef", c.get("secretRef"))["name"] for c in container["envFrom"]}
    assert sources == {"journeyflow-settings", "journeyflow-secrets"}

    for name, value in {**config, **secret, **fixed}.items():
        monkeypatch.setenv(name, value)
    settings = Settings()  # the worker's own validation
    assert settings.replication_factor >= 3 and settings.min_insync_replicas == 2
    [port] = container["ports"]
    assert port["containerPort"] == settings.web_port
    [mount] = container["volumeMounts"]
    assert Path(mount["mountPath"]) == settings.data_dir
    assert workers["spec"]["replicas"] <= settings.partitions  # more would stand idle
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
