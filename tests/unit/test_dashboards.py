"""The Grafana dashboards in ``deploy/grafana/`` hold: the committed JSON is
what ``build.py`` writes, each dashboard validates against Grafana's
dashboard JSON Schema (``tests/grafana``) and decodes through
grafana-foundation-sdk's dashboard model (generated from Grafana's schema)
without losing or changing a field and keeps the rules that model leaves to
Grafana, every query is PromQL that ``promtool`` parses and reads only
metrics and labels a worker exports, and the provisioning files point Grafana
at the dashboards and at the data source they read."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml
from grafana_foundation_sdk.cog import runtime
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models import units
from grafana_foundation_sdk.models.dashboard import Dashboard
from prometheus_client import CollectorRegistry

from streams.metrics import Metrics, catalog

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
PROVISIONING = GRAFANA / "provisioning"
#: Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"instance", "job"}


def load_build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("grafana_build", GRAFANA / "build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = load_build()
FILES = sorted(p.name for p in build.DASHBOARDS.glob("*.json"))


def grafana_schema() -> dict[str, Any]:
    """Grafana 11.1's dashboard JSON Schema (``tests/grafana/README.md``), with a
    threshold step's value allowed to be null, as the SDK corrected it later."""
    path = ROOT / "tests" / "grafana" / "dashboard.jsonschema.json"
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    value = schema["definitions"]["Threshold"]["properties"]["value"]
    assert value.pop("type") == "number"
    value["anyOf"] = [{"type": "number"}, {"type": "null"}]
    jsonschema.Draft7Validator.check_schema(schema)
    return schema


SCHEMA = jsonschema.Draft7Validator(grafana_schema())


def schema_errors(data: dict[str, Any]) -> list[str]:
    """Where and why the dashboard breaks the schema (of a panel that is
    neither kind of panel, why it is not the likelier one)."""
    out = []
    for error in SCHEMA.iter_errors(data):
        if error.context:  # anyOf: the alternative that came closest
            error = jsonschema.exceptions.best_match(error.context)
        out.append(f"/{'/'.join(map(str, error.absolute_path))}: {error.message}")
    return sorted(out)


def committed(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((build.DASHBOARDS / name).read_text(encoding="utf-8"))
    return data


def round_trip(data: dict[str, Any]) -> Any:
    """The dashboard decoded into the SDK's typed model, and encoded again."""
    register_default_plugins()  # panel options and Prometheus queries decode to their types
    return json.loads(json.dumps(Dashboard.from_json(data), cls=JSONEncoder))


def exported() -> dict[str, set[str]]:
    """Each series name a worker exports, with its labels."""
    names = {}
    for name, kind, labels, _ in catalog(Metrics(CollectorRegistry())):
        names[name] = set(labels)
        if kind == "histogram":
            names[f"{name}_bucket"] = {*labels, "le"}
            names[f"{name}_sum"] = names[f"{name}_count"] = set(labels)
    return names


def test_the_committed_dashboards_are_what_build_py_writes() -> None:
    assert sorted(build.BOARDS) == FILES
    assert build.stale() == [], "stale: run python deploy/grafana/build.py"
    assert build.main(["--check"]) == 0


def test_check_finds_a_stale_dashboard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "DASHBOARDS", tmp_path)
    assert build.main([]) == 0
    assert build.main(["--check"]) == 0
    edited = tmp_path / FILES[0]
    edited.write_text(edited.read_text(encoding="utf-8").replace("journeyflow", "jf"))
    (tmp_path / "hand-made.json").write_text("{}")
    assert build.stale() == sorted([edited, tmp_path / "hand-made.json"])
    assert build.main(["--check"]) == 1
    assert build.main([]) == 0
    assert build.stale() == [] and not (tmp_path / "hand-made.json").exists()


@pytest.mark.parametrize("name", FILES)
def test_the_sdk_dashboard_model_decodes_it_unchanged(name: str) -> None:
    data = committed(name)
    assert round_trip(data) == data


@pytest.mark.parametrize(
    "path",
    [
        ("panels", 1, "gridPosition"),  # a panel field
        ("panels", 1, "options", "legendMode"),  # a panel plugin's option
        ("panels", 1, "fieldConfig", "defaults", "units"),  # a field config
        ("panels", 1, "targets", 0, "query"),  # a Prometheus query's field
        ("templating", "list", 0, "default"),  # a variable's field
        ("timeRange",),  # a dashboard field
    ],
)
def test_the_round_trip_catches_a_misspelt_field(path: tuple[str | int, ...]) -> None:
    data = copy.deepcopy(committed("journeyflow-ops.json"))
    node: Any = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = "x"
    assert round_trip(data) != data


@pytest.mark.parametrize("name", FILES)
def test_each_dashboard_is_valid_by_grafanas_schema(name: str) -> None:
    assert schema_errors(committed(name)) == []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("panels", 1, "gridPos", "w"), "12"),  # a number as a string
        (("panels", 1, "fieldConfg"), {}),  # a misspelt panel field
        (("refresh",), 30),  # a refresh interval is a string
        (("templating", "list", 0, "refresh"), 7),  # not one of Grafana's refresh modes
        (("pannels",), []),  # a misspelt dashboard field
    ],
)
def test_the_schema_catches_what_grafana_would_refuse(
    path: tuple[str | int, ...], value: object
) -> None:
    data = copy.deepcopy(committed("journeyflow-ops.json"))
    node: Any = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert schema_errors(data)


@pytest.mark.parametrize("name", FILES)
def test_each_dashboard_keeps_grafanas_rules(name: str) -> None:
    """What the SDK's decoder takes on trust: ids, layout, plugin types, units."""
    data = committed(name)
    assert re.fullmatch(r"[a-z0-9-]{8,40}", data["uid"]), "uid: 8 to 40 characters"
    assert data["uid"] == name.removesuffix(".json")
    assert data["title"].startswith("journeyflow")
    assert data["schemaVersion"] == Dashboard().schema_version
    (variable,) = data["templating"]["list"]
    assert (variable["name"], variable["type"], variable["query"]) == (
        "datasource",
        "datasource",
        "prometheus",
    )

    everything = build.panels(data)
    ids = [p["id"] for p in everything]
    assert len(set(ids)) == len(ids) and min(ids) >= 1
    cells: set[tuple[int, int]] = set()
    for panel in everything:
        grid = panel["gridPos"]
        assert grid["w"] >= 1 and grid["h"] >= 1 and grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
        if panel["type"] == "row":
            continue
        assert runtime.panelcfg_config(panel["type"]) is not None, panel["type"]
        assert panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and all(refs) and len(set(refs)) == len(refs), panel["title"]
        unit = panel["fieldConfig"]["defaults"]["unit"]
        assert unit in vars(units).values(), f"{panel['title']}: unknown unit {unit}"


def test_every_query_parses_with_promtool(tmp_path: Path) -> None:
    tool = shutil.which("promtool")
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing in CI: .ci/run installs Debian's prometheus package")
        pytest.skip("promtool not found: apt-get install --no-install-recommends prometheus")
    queries = build.expressions()
    rules = [{"record": f"dashboard_query_{n}", "expr": e} for n, (_, _, e) in enumerate(queries)]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    done = subprocess.run([tool, "check", "rules", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(queries)} rules found" in done.stdout


def test_queries_read_only_exported_metrics_and_their_labels() -> None:
    series = exported()
    queries = [
        (board["title"], panel["title"], target["expr"], target.get("legendFormat", ""))
        for board in build.dashboards().values()
        for panel in build.panels(board)
        for target in panel.get("targets", [])
    ]
    assert [q[:3] for q in queries] == build.expressions()
    assert {b for b, _, _, _ in queries} == {
        "journeyflow: operations",
        "journeyflow: journey funnel",
        "journeyflow: identity (One-ID)",
        "journeyflow: decisions and models",
    }
    for board, panel, expr, legend in queries:
        where = f"{board} / {panel}: {expr}"
        read = re.findall(r"journeyflow_\w+", expr)
        assert read and not set(read) - set(series), f"not exported: {where}"
        for metric, matchers in re.findall(r"(journeyflow_\w+)\{([^}]*)\}", expr):
            matched = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers))
            assert matched <= series[metric] | TARGET_LABELS, f"no such label: {where}"
        # labels a query may group by, or show in a legend
        known = set().union(*(series[m] for m in read)) | TARGET_LABELS
        known |= set(re.findall(r'label_replace\(.*?, "(\w+)", "[^"]*", "\w+", "[^"]*"\)', expr))
        for grouping in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
            grouped = {label.strip() for label in grouping.split(",") if label.strip()}
            assert grouped <= known, f"no such label: {where}"
        assert set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend)) <= known, f"legend: {where}"


def test_provisioning_points_at_the_dashboards_and_their_prometheus() -> None:
    sources = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yaml").read_text())
    assert sources["apiVersion"] == 1
    (prometheus,) = sources["datasources"]
    assert prometheus["type"] == "prometheus" and prometheus["access"] == "proxy"
    assert prometheus["uid"] == build.DATASOURCE_UID
    assert prometheus["url"] == "http://prometheus:9090"
    assert prometheus["isDefault"] is True

    boards = yaml.safe_load((PROVISIONING / "dashboards" / "journeyflow.yaml").read_text())
    assert boards["apiVersion"] == 1
    (provider,) = boards["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == build.DASHBOARDS_PATH
    assert provider["allowUiUpdates"] is False  # the dashboards are code: change build.py

    for name in FILES:
        (variable,) = committed(name)["templating"]["list"]
        assert variable["query"] == prometheus["type"]
        assert variable["current"]["value"] == prometheus["uid"]
