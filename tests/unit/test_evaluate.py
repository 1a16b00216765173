"""``journeyflow evaluate``: the closed loop on the simulator's ground truth
(``streams.evaluate``), and its own policy checker."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner

from schemas.outputs import Action, Delivery
from streams.cli import main
from streams.config import oneid_config
from streams.errors import JourneyflowError
from streams.evaluate import EvaluateConfig, evaluate, violations
from streams.settings import Settings

SMALL = EvaluateConfig(seed=3, customers=60, days=1.0, events_per_second=0.3)


@pytest.fixture(scope="module")
def small() -> dict[str, Any]:
    return evaluate(SMALL)


def test_one_object_with_what_the_issue_asks_for(small: dict[str, Any]) -> None:
    for key in (
        "auc_online",
        "auc_batch",
        "auc_lead_score",
        "conversion_treated",
        "conversion_holdout",
        "lift",
        "lift_ci95",
        "policy_violations",
        "seed",
    ):
        assert key in small
    assert small["seed"] == 3 and small["records"] > 20_000
    assert small["policy_violations"] == 0
    assert small["treated_customers"] > 0 and small["holdout_customers"] > 0
    assert small["responses"].get("delivered", 0) > 0  # the simulated customers answered
    assert small["labelled"] > 0 and 0 <= small["positives"] <= small["labelled"]


def test_the_same_arguments_give_the_same_result(small: dict[str, Any]) -> None:
    again = evaluate(SMALL)
    assert {k: v for k, v in again.items() if k != "seconds"} == {
        k: v for k, v in small.items() if k != "seconds"
    }


def test_bad_arguments_are_refused_clearly() -> None:
    with pytest.raises(JourneyflowError, match="--days"):
        EvaluateConfig(days=0)
    result = CliRunner().invoke(main, ["evaluate", "--customers", "3"])
    assert result.exit_code == 1 and "--customers must be at least 10" in result.output


def _action(n: int, at: datetime, action: str = "repurchase_reminder", **kw: Any) -> Action:
    return Action(
        id=f"a{n}",
        customer_id="member_id:M-1",
        cause_event_id=f"e{n}",
        rule_id=f"catalog:{action}",
        decided_at=at,
        reason="r",
        action=action,
        delivery=Delivery(channel="wecom", identifier_type="member_id", identifier="M-1"),
        not_before=at,
        catalog_version="t",
        **kw,
    )


def test_the_checker_finds_caps_cooldowns_and_quiet_hours_broken() -> None:
    catalog = oneid_config(Settings()).core.decisions.actions.catalog  # type: ignore[union-attr]
    noon = datetime(2026, 11, 2, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai
    fine = [_action(1, noon), _action(2, noon + timedelta(days=8))]
    assert violations(fine, catalog, set()) == 0
    twice_a_day = [_action(1, noon), _action(2, noon + timedelta(hours=2), "group_invitation")]
    assert violations(twice_a_day, catalog, set()) == 1  # wecom: one a day
    assert violations(twice_a_day, catalog, {"a1"}) == 0  # a failed delivery is no contact
    cooling = [_action(1, noon), _action(2, noon + timedelta(days=2))]  # cooldown 168 h
    assert violations(cooling, catalog, set()) == 1
    at_night = [_action(1, noon + timedelta(hours=11))]  # 23:00 in Shanghai
    assert violations(at_night, catalog, set()) == 1


def test_lift_is_intention_to_treat_with_its_interval(small: dict[str, Any]) -> None:
    low, high = small["lift_ci95"]
    assert low <= small["lift"] <= high
    assert small["lift"] == pytest.approx(
        small["conversion_treated"] - small["conversion_holdout"], abs=1e-3
    )
    json.dumps(small)  # one JSON object
