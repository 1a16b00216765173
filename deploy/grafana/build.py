"""journeyflow's Grafana dashboards as code.

Four dashboards, built with Grafana's own typed builders
(``grafana-foundation-sdk``) and written as JSON to ``dashboards/``, where
Grafana's file provisioning (``provisioning/``) reads them:

- ``journeyflow-ops``: throughput, lag, latency, dead letters, readiness;
- ``journeyflow-funnel``: stage transitions, and each shipped stage model's funnel;
- ``journeyflow-identity``: One-ID merges, refusals and protocol messages;
- ``journeyflow-decisions``: next-best-actions, suppressions, feedback, model
  quality and maturity.

The model is Grafana 11.1's (``schemaVersion`` 39), the Grafana that
docker-compose.yml runs; a newer Grafana migrates it when it loads it.
Every query reads only metrics a worker exports (``python -m streams.metrics``)
and is plain PromQL (no Grafana macros), so it runs as it is against any
Prometheus. ``tests/unit/test_dashboards.py`` checks that, that the JSON here
is what this file writes, and that it decodes through the SDK's dashboard
model unchanged.

    python deploy/grafana/build.py            # write the JSON files (and only those)
    python deploy/grafana/build.py --check    # exit 1 if a file is stale
"""

from __future__ import annotations

import argparse
import json
import string
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import bargauge, prometheus, stat, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.variants import Dataquery
from grafana_foundation_sdk.models import common, units
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DashboardLinkType,
    DataSourceRef,
    Threshold,
    ThresholdsMode,
    VariableOption,
)

from streams.core.stages import StageModel, parse_stage_model

HERE = Path(__file__).resolve().parent
DASHBOARDS = HERE / "dashboards"
#: Where Grafana finds the dashboards (provisioning/dashboards/journeyflow.yaml).
DASHBOARDS_PATH = "/var/lib/grafana/dashboards"
#: The provisioned Prometheus (provisioning/datasources/prometheus.yaml).
DATASOURCE_UID = "prometheus"
#: Rate window, as in the alert rules: 20 scrapes at prometheus.yml's 15 s interval.
WINDOW = "5m"

#: Every panel reads the data source the dashboard's ``datasource`` variable picks.
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")

Panel = timeseries.Panel | stat.Panel | bargauge.Panel


# -- PromQL -------------------------------------------------------------------


def rate(metric: str, by: str = "", where: str = "") -> str:
    """Per second over the window, summed (``by`` labels kept)."""
    selector = f"{metric}{{{where}}}" if where else metric
    aggregate = f"sum by ({by}) " if by else "sum"
    return f"{aggregate}(rate({selector}[{WINDOW}]))"


def percentiles(
    histogram: str, qs: tuple[float, ...] = (0.5, 0.95, 0.99), by: str = "", where: str = ""
) -> list[tuple[str, str]]:
    """``(query, legend)`` of each quantile ``qs`` of a histogram (``p50``, ...),
    one series per value of the label ``by`` when given."""
    legend = f"{{{{{by}}}}} " if by else ""
    return [(quantile(q, histogram, by, where), f"{legend}p{round(q * 100)}") for q in qs]


def quantile(q: float, histogram: str, by: str = "", where: str = "") -> str:
    """A quantile of a histogram over the window, across all workers."""
    keep = f"le, {by}" if by else "le"
    buckets = f"{histogram}_bucket{{{where}}}" if where else f"{histogram}_bucket"
    return f"histogram_quantile({q}, sum by ({keep}) (rate({buckets}[{WINDOW}])))"


def ratio(part: str, whole: str) -> str:
    return f"{part} / {whole}"


#: Conversion labels of the decisions an action was chosen at, by group.
LIFT = "journeyflow_lift_labels_total"


def conversion(group: str, window: str) -> str:
    """The share of ``group``'s labelled decisions that converted over ``window``
    (a late order's correction turns a not_converted label round)."""

    def labels(which: str) -> str:
        return f'sum(increase({LIFT}{{group="{group}",label=~"{which}"}}[{window}]))'

    return ratio(labels("converted|corrected"), labels("converted|not_converted"))


def as_stage(side: str, where: str) -> str:
    """Stage transitions per second with ``side`` (from_stage or to_stage) as ``stage``."""
    moves = f"rate(journeyflow_stage_transitions_total{{{where}}}[{WINDOW}])"
    return f'sum by (stage) (label_replace({moves}, "stage", "$1", "{side}", "(.+)"))'


# -- panels ---------------------------------------------------------------------


def queries(*targets: tuple[str, str], instant: bool = False) -> list[Builder[Dataquery]]:
    """One query per ``(expression, legend)``, with ref ids A, B, C...; a range
    query (a series over time) unless ``instant`` (the value now)."""
    built: list[Builder[Dataquery]] = []
    for (expr, legend), ref in zip(targets, string.ascii_uppercase, strict=False):
        query = prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref)
        built.append(query.instant() if instant else query)
    return built


def graph(
    title: str,
    unit: str,
    *targets: tuple[str, str],
    description: str = "",
    width: int = 12,
    stack: bool = False,
) -> timeseries.Panel:
    """A time series panel; its legend a table with each series' mean and last value."""
    panel = (
        timeseries.Panel()
        .title(title)
        .datasource(DATASOURCE)
        .unit(unit)
        .min(0)
        .span(width)
        .height(8)
        .targets(queries(*targets))
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["mean", "lastNotNull"])
        )
        .tooltip(
            common_builders.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
        .fill_opacity(20 if stack else 0)
    )
    if description:
        panel.description(description)
    if stack:
        panel.stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    return panel


def last_value() -> common_builders.ReduceDataOptions:
    """What stats and bar gauges show of a series: its last value."""
    return common_builders.ReduceDataOptions().calcs(["lastNotNull"])


def single(
    title: str,
    unit: str,
    expr: str,
    description: str,
    red_from: float | None = None,
    width: int = 6,
) -> stat.Panel:
    """A stat panel: one number, now; red from ``red_from`` up if given."""
    steps = [Threshold(value=None, color="green")]
    if red_from is not None:
        steps.append(Threshold(value=red_from, color="red"))
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(4)
        .with_target(prometheus.Dataquery().expr(expr).instant().ref_id("A"))
        .reduce_options(last_value())
        .graph_mode(common.BigValueGraphMode.NONE)
        .thresholds(
            dashboard_builders.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(steps)
        )
    )


def funnel(model: StageModel) -> bargauge.Panel:
    """Entries into each stage of one stage model over a day, in the model's order."""
    stages = [(s.id, s.label) for s in model.stages] + [(d.to, d.label) for d in model.decay]
    targets = [
        (
            f'sum(increase(journeyflow_stage_transitions_total{{to_stage="{stage}"}}[1d]))',
            label,
        )
        for stage, label in stages
    ]
    return bars(
        f"{model.name}: entries per stage, last 24 h",
        f"{model.description} Journeys that entered each stage in the last 24 hours "
        "(a journey may skip a stage, and decay rules move it back). Only the stage model "
        "the workers run (JOURNEYFLOW_STAGE_MODEL) has data.",
        *targets,
    )


def bars(title: str, description: str, *targets: tuple[str, str], width: int = 8) -> bargauge.Panel:
    """Horizontal bars, a value now for each ``(expression, legend)``."""
    return (
        bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(units.Short)
        .min(0)
        .span(width)
        .height(9)
        .targets(queries(*targets, instant=True))
        .reduce_options(last_value())
        .orientation(common.VizOrientation.HORIZONTAL)
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
    )


def shipped_stage_models() -> list[StageModel]:
    folder = resources.files("streams.core") / "stage_models"
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".json")), key=lambda f: f.name)
    return [parse_stage_model(json.loads(f.read_text(encoding="utf-8"))) for f in files]


# -- dashboards -----------------------------------------------------------------


def board(
    uid: str, title: str, description: str, rows: dict[str, list[Panel]]
) -> dashboard_builders.Dashboard:
    """A dashboard of rows of panels, reading the Prometheus its variable picks,
    with a menu of the other journeyflow dashboards."""
    built = (
        dashboard_builders.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["journeyflow"])
        .time("now-6h", "now")
        .refresh("30s")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .readonly()
        .link(
            dashboard_builders.DashboardLink("journeyflow")
            .type(DashboardLinkType.DASHBOARDS)
            .tags(["journeyflow"])
            .as_dropdown(True)
            .keep_time(True)
        )
        .with_variable(
            dashboard_builders.DatasourceVariable("datasource")
            .label("Prometheus")
            .type("prometheus")
            .current(VariableOption(text="Prometheus", value=DATASOURCE_UID))
        )
    )
    for row, panels in rows.items():
        built.with_row(dashboard_builders.Row(row))
        for panel in panels:
            built.with_panel(panel)
    return built


def ops() -> dashboard_builders.Dashboard:
    events = "journeyflow_events_total"
    return board(
        "journeyflow-ops",
        "journeyflow: operations",
        "Is journeyflow keeping up: readiness, throughput, consumer lag, latency, dead letters.",
        {
            "Health": [
                single(
                    "Workers ready",
                    units.Short,
                    "sum(journeyflow_ready)",
                    "Workers whose tables are recovered and that serve traffic.",
                ),
                single(
                    "Workers not ready",
                    units.Short,
                    "count(journeyflow_ready == 0) or vector(0)",
                    "Workers rebalancing or recovering their tables (or stuck there): alert "
                    "JourneyflowWorkerNotReady after 10 minutes.",
                    red_from=1,
                ),
                single(
                    "Dead-lettered share",
                    units.PercentUnit,
                    ratio(rate("journeyflow_dead_letters_total"), rate(events)),
                    "Inputs sent to the DLQ over all input events: alert "
                    "JourneyflowDeadLetterRateHigh above 5 %.",
                    red_from=0.05,
                ),
                single(
                    "Consumer lag",
                    units.Short,
                    "sum(journeyflow_consumer_lag_messages)",
                    "Messages behind the end of all assigned input partitions.",
                ),
                graph(
                    "Ready, per worker",
                    units.Short,
                    ("journeyflow_ready", "{{instance}}"),
                    description="0 while a worker rebalances or recovers its tables, 1 once it "
                    "serves traffic (sampled every 5 s).",
                ),
                graph(
                    "Rebalances and recovery, per worker",
                    units.Short,
                    (
                        f"sum by (instance) (increase(journeyflow_rebalances_total[{WINDOW}]))",
                        "{{instance}} assignments",
                    ),
                    (
                        "sum by (instance) "
                        f"(increase(journeyflow_restored_records_total[{WINDOW}])) / 1000",
                        "{{instance}} thousand changelog records restored",
                    ),
                    description="A worker is positioned once at start and after each "
                    "rebalance, when the partitions it was given have their tables recovered; "
                    "an empty data folder restores every record of its partitions.",
                ),
            ],
            "Throughput": [
                graph(
                    "Input events by outcome",
                    units.OpsPerSecond,
                    (rate(events, by="outcome"), "{{outcome}}"),
                    description="redelivered: read again after a restart or a rebalance.",
                    stack=True,
                ),
                graph(
                    "Touchpoints processed by channel",
                    units.OpsPerSecond,
                    (
                        rate("journeyflow_inputs_total", by="channel", where='outcome="processed"'),
                        "{{channel}}",
                    ),
                    stack=True,
                ),
                graph(
                    "Outputs by kind",
                    units.OpsPerSecond,
                    (rate("journeyflow_outputs_total", by="kind"), "{{kind}}"),
                ),
                graph(
                    "Events over HTTP by result",
                    units.OpsPerSecond,
                    (rate("journeyflow_http_events_total", by="result"), "{{result}}"),
                    description="POST /v1/events.",
                ),
            ],
            "Latency": [
                graph(
                    "Latency by hop",
                    units.Seconds,
                    *percentiles(
                        "journeyflow_latency_seconds",
                        (0.5, 0.99),
                        by="hop",
                        where='hop!="delivered"',
                    ),
                    description="admission: a touchpoint's Kafka timestamp until its re-keyed "
                    "record is acknowledged; journey: the re-keyed record until its journey is "
                    "written; output: the re-keyed record until each output it decided is "
                    "acknowledged, before the journey is written (alert JourneyflowOutputsSlow "
                    "above 5 s). Deliveries are on the decisions dashboard.",
                ),
                graph(
                    "Batch time",
                    units.Seconds,
                    *percentiles("journeyflow_batch_seconds"),
                    description="Time to apply one batch: step, send with acks, write tables.",
                ),
                graph(
                    "Records per batch",
                    units.Short,
                    *percentiles("journeyflow_batch_records", (0.5, 0.99)),
                ),
                graph(
                    "Event time behind the wall clock, per journey partition",
                    units.Seconds,
                    (
                        "time() - max by (partition) (journeyflow_partition_event_time_seconds)",
                        "partition {{partition}}",
                    ),
                    description="Event-time clock of each journey partition against now: grows "
                    "while a partition is behind or idle (alert JourneyflowEventTimeStuck).",
                ),
            ],
            "Lag": [
                graph(
                    "Consumer lag by topic",
                    units.Short,
                    ("sum by (topic) (journeyflow_consumer_lag_messages)", "{{topic}}"),
                    description="Messages behind the end of the assigned input partitions "
                    "(alert JourneyflowConsumerLagGrowing).",
                ),
                graph(
                    "Consumer lag, 10 furthest partitions",
                    units.Short,
                    (
                        "topk(10, max by (topic, partition) (journeyflow_consumer_lag_messages))",
                        "{{topic}} {{partition}}",
                    ),
                ),
                graph(
                    "Late events",
                    units.OpsPerSecond,
                    (rate("journeyflow_late_events_total"), "late"),
                    description="Events older than their partition's clock by more than "
                    "JOURNEYFLOW_LATE_AFTER_SECONDS: applied, but they decided nothing.",
                ),
            ],
            "Dead letters": [
                graph(
                    "Dead-lettered share of input events",
                    units.PercentUnit,
                    (ratio(rate("journeyflow_dead_letters_total"), rate(events)), "dead-lettered"),
                    description="Alert JourneyflowDeadLetterRateHigh above 5 % for 10 minutes.",
                ),
                graph(
                    "Dead letters by reason",
                    units.OpsPerSecond,
                    (rate("journeyflow_dead_letters_total", by="reason"), "{{reason}}"),
                    stack=True,
                ),
            ],
        },
    )


def journey_funnel() -> dashboard_builders.Dashboard:
    moves = "journeyflow_stage_transitions_total"
    per_minute = "{} * 60".format
    entries = as_stage("to_stage", 'to_stage!="none"')
    exits = as_stage("from_stage", 'from_stage!="none"')
    return board(
        "journeyflow-funnel",
        "journeyflow: journey funnel",
        "How many customers each stage holds, how journeys move through the stage model "
        "(transitions, entries and exits per stage), and each shipped stage model's funnel.",
        {
            "Customers": [
                bars(
                    "Customers per stage, now",
                    "Journeys in each stage of the stage model the workers run, over every "
                    "journey partition.",
                    ("sum by (stage) (journeyflow_customers)", "{{stage}}"),
                    width=12,
                ),
                graph(
                    "Customers per stage",
                    units.Short,
                    ("sum by (stage) (journeyflow_customers)", "{{stage}}"),
                    description="Journeys in each stage over time (a worker's partitions count "
                    "once: while a rebalance moves them, a scrape may miss a few).",
                    stack=True,
                ),
            ],
            "Transitions": [
                graph(
                    "Stage transitions per minute",
                    units.OpsPerMinute,
                    (
                        per_minute(rate(moves, by="from_stage, to_stage")),
                        "{{from_stage}} → {{to_stage}}",
                    ),
                    description="from_stage none: a journey's first stage; to_stage none: a "
                    "journey gone (erased, or merged into another).",
                    width=24,
                ),
                graph(
                    "Entries per stage, per minute",
                    units.OpsPerMinute,
                    (
                        per_minute(rate(moves, by="to_stage", where='to_stage!="none"')),
                        "{{to_stage}}",
                    ),
                    description="Forward with events, back by the stage model's decay rules.",
                    stack=True,
                ),
                graph(
                    "Net flow per stage (entries − exits), per minute",
                    units.OpsPerMinute,
                    # a stage with entries but no exits yet (or the other way round) counts 0 there
                    (
                        per_minute(f"(({entries} or {exits} * 0) - ({exits} or {entries} * 0))"),
                        "{{stage}}",
                    ),
                    description="Above 0 a stage holds more journeys than before, below 0 fewer.",
                ),
                graph(
                    "Journeys started and gone, per minute",
                    units.OpsPerMinute,
                    (per_minute(rate(moves, where='from_stage="none"')), "started"),
                    (per_minute(rate(moves, where='to_stage="none"')), "gone (erased or merged)"),
                ),
            ],
            "Funnel by stage model": [funnel(model) for model in shipped_stage_models()],
        },
    )


def identity() -> dashboard_builders.Dashboard:
    refusals = "journeyflow_identity_refusals_total"
    shared = "journeyflow_shared_identifiers_total"
    return board(
        "journeyflow-identity",
        "journeyflow: identity (One-ID)",
        "One-ID: customers merged, links refused and why, identifiers found shared, and the "
        "protocol's messages.",
        {
            "Merges and refusals": [
                single(
                    "Merges, last hour",
                    units.Short,
                    "sum(increase(journeyflow_merges_total[1h]))",
                    "Customers merged into another (published on the merges topic).",
                    width=8,
                ),
                single(
                    "Links refused, last hour",
                    units.Short,
                    f"sum(increase({refusals}[1h]))",
                    "Links One-ID refused, whatever the reason.",
                    width=8,
                ),
                single(
                    "Refused as shared identifiers, last hour",
                    units.Short,
                    f'sum(increase({refusals}{{reason="shared"}}[1h]))',
                    "Links refused because an identifier was seen with too many people.",
                    width=8,
                ),
                graph(
                    "Merges",
                    units.OpsPerSecond,
                    (rate("journeyflow_merges_total"), "merges"),
                ),
                graph(
                    "Links refused by reason",
                    units.OpsPerSecond,
                    (rate(refusals, by="reason"), "{{reason}}"),
                    description="conflict_member_id, conflict_wechat_unionid, "
                    "too_many_identifiers, shared (an identifier seen with too many people).",
                    stack=True,
                ),
            ],
            "Shared identifiers": [
                single(
                    "Identifiers found shared, last 24 h",
                    units.Short,
                    f"sum(increase({shared}[1d]))",
                    "Identifiers seen with more people than JOURNEYFLOW_SHARED_IDENTIFIER_"
                    "PARTNERS (a shop tablet, a test phone): they link no one from then on. "
                    "Each is a shared_identifier alert on journeyflow.alerts, with the "
                    "identifier's keyed hash to look it up.",
                    width=8,
                ),
                graph(
                    "Identifiers found shared per hour, by type",
                    units.Short,
                    (f"sum by (type) (increase({shared}[1h]))", "{{type}}"),
                    description="A step up in one type (many phones at once) is more often a "
                    "data problem at a source (a placeholder number, a shared store account) than "
                    "shared devices.",
                    width=16,
                    stack=True,
                ),
            ],
            "Protocol": [
                graph(
                    "One-ID messages by kind",
                    units.OpsPerSecond,
                    (rate("journeyflow_identity_messages_total", by="kind"), "{{kind}}"),
                    description="route, apply, link, absorb, propose, accepted, refused, fold, "
                    "repoint.",
                    width=24,
                    stack=True,
                ),
            ],
        },
    )


def decisions_and_models() -> dashboard_builders.Dashboard:
    nba = "journeyflow_nba_total"
    return board(
        "journeyflow-decisions",
        "journeyflow: decisions and models",
        "Next-best-actions sent, held out and left out; feedback; the propensity models' "
        "quality and maturity.",
        {
            "Actions": [
                single(
                    "Actions sent",
                    units.OpsPerSecond,
                    rate(nba, where='result="sent"'),
                    "Next-best-actions sent on journeyflow.actions.",
                ),
                single(
                    "Holdout share",
                    units.PercentUnit,
                    ratio(
                        rate(nba, where='result="holdout"'),
                        rate(nba, where='result=~"sent|holdout"'),
                    ),
                    "Decisions held out (logged on journeyflow.holdout, not sent) over sent "
                    "and held out.",
                ),
                single(
                    "Left out",
                    units.OpsPerSecond,
                    rate(nba, where='result=~"left_out_.+"'),
                    "Catalog actions not chosen: not eligible or stopped by a contact policy.",
                ),
                single(
                    "Decisions dropped unlabelled",
                    units.OpsPerSecond,
                    rate("journeyflow_decisions_total", where='result="dropped"'),
                    "Open decisions pushed out by a newer one: learning never sees them.",
                ),
                graph(
                    "Arbitration at decision points",
                    units.OpsPerSecond,
                    (rate(nba, by="result", where='result=~"sent|holdout"'), "{{result}}"),
                    stack=True,
                ),
                graph(
                    "Suppressions: actions left out, by reason",
                    units.OpsPerSecond,
                    (rate(nba, by="result", where='result=~"left_out_.+"'), "{{result}}"),
                    description="left_out_<reason>: a catalog action not eligible or stopped by a "
                    "contact policy (e.g. left_out_day_cap).",
                    stack=True,
                ),
                graph(
                    "Outputs by kind and rule",
                    units.OpsPerSecond,
                    (rate("journeyflow_outputs_total", by="kind, rule"), "{{kind}} {{rule}}"),
                ),
                graph(
                    "Delivery by marketing automation",
                    units.Seconds,
                    *percentiles(
                        "journeyflow_latency_seconds", (0.5, 0.99), where='hop="delivered"'
                    ),
                    description="From a catalog action's not_before until the delivery its "
                    "feedback reports (occurred_at): the time marketing automation takes, "
                    "quiet hours' deferral not included.",
                ),
                graph(
                    "Feedback by result",
                    units.OpsPerSecond,
                    (rate("journeyflow_feedback_total", by="result"), "{{result}}"),
                    description="Action outcomes from journeyflow.feedback: counted, repeated, "
                    "unknown.",
                ),
            ],
            "Holdout": [
                single(
                    "Held out, last 24 h",
                    units.Short,
                    f'sum(increase({nba}{{result="holdout"}}[1d]))',
                    "Actions logged for held-out customers (on journeyflow.holdout, never "
                    "sent) in the last 24 hours: the holdout's size.",
                    width=8,
                ),
                single(
                    "Measured lift, last 7 days",
                    units.PercentUnit,
                    f"({conversion('treated', '7d')}) - ({conversion('holdout', '7d')})",
                    "Conversion (an order within the convert horizon) of the treated "
                    "customers' decisions minus the held-out customers', labelled in the last "
                    "7 days: every decision next-best-action arbitrated at, action chosen or "
                    "not (intention to treat; the holdout is a hash of the customer id). No "
                    "confidence interval here: `journeyflow evaluate` measures the lift with "
                    "one on the simulator's closed loop.",
                    width=8,
                ),
                single(
                    "Labelled in the holdout, last 7 days",
                    units.Short,
                    f'sum(increase({LIFT}{{group="holdout",label=~"converted|not_converted"}}[7d]))',
                    "Decisions held out whose conversion is known: the fewer, the wider the "
                    "lift's error.",
                    width=8,
                ),
                graph(
                    "Conversion by group (24 h window)",
                    units.PercentUnit,
                    (conversion("treated", "1d"), "treated"),
                    (conversion("holdout", "1d"), "holdout"),
                    description="Of the arbitrated decisions labelled in the last 24 hours, "
                    "the share converted, by the customer's group: treated (what is chosen is "
                    "sent), holdout (logged, not sent).",
                    width=24,
                ),
            ],
            "Learning": [
                graph(
                    "Decisions by result",
                    units.OpsPerSecond,
                    (rate("journeyflow_decisions_total", by="result"), "{{result}}"),
                    description="recorded: scored, waiting for its label; dropped: pushed out "
                    "unlabelled.",
                ),
                graph(
                    "Labelled examples by target and label",
                    units.OpsPerSecond,
                    (
                        rate("journeyflow_examples_total", by="target, label"),
                        "{{target}} {{label}}",
                    ),
                ),
                graph(
                    "Examples the trainers learn, by target",
                    units.OpsPerSecond,
                    (rate("journeyflow_trainer_examples_total", by="target"), "{{target}}"),
                ),
                graph(
                    "Model snapshots per hour",
                    units.Short,
                    (
                        "sum by (target, what) (increase(journeyflow_model_snapshots_total[1h]))",
                        "{{target}} {{what}}",
                    ),
                    description="published by a trainer, installed by a scorer.",
                ),
            ],
            "Model quality (worst worker)": [
                graph(
                    "AUC by target",
                    units.Short,
                    ('min by (target) (journeyflow_model_quality{metric="auc"})', "{{target}}"),
                    description="Progressive validation: the score at decision time against the "
                    "later label. 0.5 is chance (alert JourneyflowModelQualityLow below 0.55).",
                    width=8,
                ),
                graph(
                    "Log loss by target",
                    units.Short,
                    (
                        'max by (target) (journeyflow_model_quality{metric="log_loss"})',
                        "{{target}}",
                    ),
                    description="Lower is better.",
                    width=8,
                ),
                graph(
                    "Calibration error by target",
                    units.Short,
                    (
                        'max by (target) (journeyflow_model_quality{metric="calibration_error"})',
                        "{{target}}",
                    ),
                    description="Lower is better.",
                    width=8,
                ),
            ],
            "Model maturity": [
                graph(
                    "Examples learned by the model in use",
                    units.Short,
                    ("min by (target) (journeyflow_model_examples)", "{{target}}"),
                    description="Ready at JOURNEYFLOW_MODEL_MIN_EXAMPLES.",
                    width=6,
                ),
                graph(
                    "Model ready",
                    units.Short,
                    ("min by (target) (journeyflow_model_ready)", "{{target}}"),
                    description="1 when the model in use has learned enough examples, on "
                    "every worker.",
                    width=6,
                ),
                graph(
                    "Snapshot age",
                    units.Seconds,
                    ("max by (target) (journeyflow_model_snapshot_age_seconds)", "{{target}}"),
                    description="Since the trainer snapshotted the model in use (alert "
                    "JourneyflowModelSnapshotStale).",
                    width=6,
                ),
                graph(
                    "Model version in use",
                    units.Short,
                    ("min by (target) (journeyflow_model_version)", "{{target}}"),
                    description="0: untrained.",
                    width=6,
                ),
            ],
        },
    )


# -- files ----------------------------------------------------------------------

BOARDS = {
    "journeyflow-ops.json": ops,
    "journeyflow-funnel.json": journey_funnel,
    "journeyflow-identity.json": identity,
    "journeyflow-decisions.json": decisions_and_models,
}


def dashboards() -> dict[str, dict[str, Any]]:
    """Each dashboard's JSON model by file name, panels numbered in order."""
    built = {}
    for name, make in BOARDS.items():
        model = make().build()
        for number, panel in enumerate(model.panels or [], start=1):
            panel.id_val = number
        built[name] = json.loads(json.dumps(model, cls=JSONEncoder))
    return built


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """A dashboard's panels, those inside rows included."""
    found = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def expressions() -> list[tuple[str, str, str]]:
    """Every ``(dashboard title, panel title, PromQL expression)``."""
    return [
        (board["title"], panel["title"], target["expr"])
        for board in dashboards().values()
        for panel in panels(board)
        for target in panel.get("targets", [])
    ]


def render() -> dict[Path, str]:
    """The text of each file in ``dashboards/``."""
    return {
        DASHBOARDS / name: json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        for name, data in dashboards().items()
    }


def stale() -> list[Path]:
    """Files in ``dashboards/`` that differ from what this module writes, or that it does not."""
    wanted = render()
    present = set(DASHBOARDS.glob("*.json"))
    return sorted(
        {p for p, text in wanted.items() if not p.exists() or p.read_text(encoding="utf-8") != text}
        | (present - set(wanted))
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is stale")
    args = parser.parse_args(argv)
    if args.check:
        found = stale()
        for path in found:
            print(f"stale: {path} (run python deploy/grafana/build.py)")
        return 1 if found else 0
    files = render()
    DASHBOARDS.mkdir(exist_ok=True)
    for path in set(DASHBOARDS.glob("*.json")) - set(files):
        path.unlink()  # a dashboard this file no longer makes
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
