"""Loading the core's configuration (stage model, rules) from files.

The core only parses data; this shell module reads the shipped JSON files
or a brand's own.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from models.propensity import ModelSpec
from models.trainer import ModelScorer, default_specs, horizons_ms
from streams.core.actions import ActionsConfig, Catalog, parse_catalog
from streams.core.decisions import DecisionConfig, Scorer
from streams.core.engine import CoreConfig
from streams.core.errors import CoreError
from streams.core.ingest import IngestPolicy
from streams.core.journey import JourneyLimits
from streams.core.oneid import OneIdConfig
from streams.core.pii import PiiKey
from streams.core.rules import RuleSet, parse_rules
from streams.core.scoring import Scoring, parse_scoring
from streams.core.stages import StageModel, parse_stage_model
from streams.errors import JourneyflowError
from streams.settings import Settings


def _read_json(path: Path | str, what: str) -> Any:
    try:
        if isinstance(path, Path):
            text = path.read_text(encoding="utf-8")
        else:
            text = resources.files("streams.core").joinpath(path).read_text(encoding="utf-8")
        return json.loads(text)
    except FileNotFoundError:
        raise JourneyflowError(f"{what}: no such file {path}") from None
    except json.JSONDecodeError as exc:
        raise JourneyflowError(f"{what}: {path} is not valid JSON: {exc}") from None


def load_stage_model(name_or_path: str) -> StageModel:
    """A shipped stage model by name (``aipl``) or a JSON file of one."""
    if name_or_path.endswith(".json"):
        data = _read_json(Path(name_or_path), "stage model")
    else:
        data = _read_json(f"stage_models/{name_or_path}.json", f"stage model {name_or_path!r}")
    try:
        return parse_stage_model(data)
    except CoreError as exc:
        raise JourneyflowError(str(exc)) from None


def load_rules(path: Path | None) -> RuleSet:
    """The shipped decision rules, or a brand's own JSON file."""
    data = _read_json(path, "rules") if path else _read_json("rules/default.json", "rules")
    try:
        return parse_rules(data)
    except CoreError as exc:
        raise JourneyflowError(str(exc)) from None


def load_scoring(path: Path | None) -> Scoring:
    """The shipped scoring (lead points, tags, half-life), or a brand's own JSON file."""
    data = (
        _read_json(path, "scoring") if path else _read_json("scoring_files/default.json", "scoring")
    )
    try:
        return parse_scoring(data)
    except CoreError as exc:
        raise JourneyflowError(str(exc)) from None


def load_catalog(path: Path | None, stages: StageModel, scoring: Scoring) -> Catalog:
    """The shipped action catalog and contact policies, or a brand's own JSON
    file; its stages and tags must be ones the stage model and scoring define."""
    data = _read_json(path, "catalog") if path else _read_json("catalog/default.json", "catalog")
    names = {s.id for s in stages.stages} | {d.to for d in stages.decay}
    try:
        return parse_catalog(
            data, stages=frozenset(names), tags=frozenset(t.id for t in scoring.tags)
        )
    except CoreError as exc:
        raise JourneyflowError(str(exc)) from None


def model_specs(settings: Settings) -> dict[str, ModelSpec]:
    """The propensity models the settings ask for."""
    return default_specs(
        min_examples=settings.model_min_examples,
        convert_horizon_hours=settings.convert_horizon_hours,
        churn_horizon_days=settings.churn_horizon_days,
    )


def decision_config(
    settings: Settings,
    scorer: Scorer | None = None,
    catalog: Catalog | None = None,
) -> DecisionConfig | None:
    """Decision points scored by ``scorer`` (untrained models when not given:
    replay and the benchmarks score as a worker with no snapshot yet), with
    actions chosen from ``catalog`` when given; None when
    ``JOURNEYFLOW_DECISIONS`` is off."""
    if not settings.decisions:
        return None
    specs = model_specs(settings)
    horizons = horizons_ms(specs)
    return DecisionConfig(
        scorer=scorer or ModelScorer(specs),
        horizons_ms=horizons,
        spacing_ms=settings.decision_spacing_minutes * 60_000,
        actions=None if catalog is None else ActionsConfig(catalog, horizons["churn"]),
    )


def check_rule_actions(rules: RuleSet, catalog: Catalog | None) -> None:
    """With a catalog, every action rule goes out as a catalog action, under
    the contact policies: one naming none, or an unknown one, is refused at start."""
    if catalog is None:
        return
    known = {a.id for a in catalog.actions}
    for rule in rules.rules:
        if rule.output != "action" or not rule.enabled:
            continue
        if rule.catalog_action is None:
            raise JourneyflowError(
                f"rule {rule.id} sends action {rule.action!r} outside the action catalog: "
                f"name the catalog action it goes out as (catalog_action, one of "
                f"{', '.join(sorted(known))}) so the contact policies apply to it, "
                "or turn the catalog off (JOURNEYFLOW_ACTIONS=false)"
            )
        if rule.catalog_action not in known:
            raise JourneyflowError(
                f"rule {rule.id}: catalog_action {rule.catalog_action!r} is not in catalog "
                f"{catalog.version} (actions: {', '.join(sorted(known))})"
            )


def core_config(settings: Settings, scorer: Scorer | None = None) -> CoreConfig:
    stages = load_stage_model(settings.stage_model)
    scoring = load_scoring(settings.scoring_file)
    catalog = load_catalog(settings.catalog_file, stages, scoring) if settings.actions else None
    rules = load_rules(settings.rules_file)
    check_rule_actions(rules, catalog if settings.decisions else None)  # no decisions: no catalog
    return CoreConfig(
        stage_model=stages,
        rules=rules,
        scoring=scoring,
        limits=JourneyLimits(
            recent_event_ids=settings.dedupe_window, identifiers=settings.max_identifiers
        ),
        decisions=decision_config(settings, scorer, catalog),
    )


def oneid_config(settings: Settings, scorer: Scorer | None = None) -> OneIdConfig:
    return OneIdConfig(
        core_config(settings, scorer),
        max_partners=settings.shared_identifier_partners,
        late_after_ms=settings.late_after_seconds * 1000,
        too_late_ms=settings.too_late_days * 86_400_000,
        input_topic=settings.topic("touchpoints"),
    )


def ingest_policy(settings: Settings) -> IngestPolicy:
    return IngestPolicy(
        pii_key=PiiKey(settings.pii_key_id, settings.pii_key.get_secret_value().encode()),
        max_future_skew_ms=settings.max_future_skew_seconds * 1000,
    )
