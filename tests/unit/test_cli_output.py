"""What `journeyflow up` prints for each output: one line, times in UTC+8
whatever zone the output's decision time carries."""

from __future__ import annotations

from streams.cli import demo_learning_env, describe_output
from streams.settings import Settings


def test_merges_and_actions_print_in_one_time_zone() -> None:
    merge = {
        "kind": "merge",
        "decided_at": "2026-11-24T01:47:21Z",
        "absorbed": "device_id:d1",
        "survivor": "member_id:M-1",
        "absorbed_identifiers": ["device_id:d1"],
    }
    action = {
        "kind": "action",
        "decided_at": "2026-11-24T09:47:21+08:00",
        "action": "send_coupon",
        "params": {"coupon_id": "CP-1"},
        "customer_id": "member_id:M-1",
        "reason": "asked about price",
    }

    assert describe_output(merge) == (
        "09:47:21 merge        device_id:d1 -> member_id:M-1 | holds device_id:d1"
    )
    assert describe_output(action).startswith("09:47:21 action       send_coupon")


def test_catalog_actions_say_whether_a_model_or_a_rule_chose_them() -> None:
    common = {
        "kind": "action",
        "decided_at": "2026-11-24T12:02:11Z",
        "action": "live_viewer_coupon",
        "catalog_version": "1",
        "holdout": False,
        "delivery": {"channel": "live_popup"},
        "customer_id": "live_viewer_id:douyin:5",
        "reason": "why",
    }
    chosen = {**common, "propensity": 0.4123, "model_version": "convert:7"}
    chosen["choice_probability"] = 0.81
    by_rule = {**common, "rule_id": "live_price_question_coupon"}

    assert "propensity 0.41 (convert:7), chosen with p=0.81" in describe_output(chosen)
    assert "by rule live_price_question_coupon" in describe_output(by_rule)
    assert "propensity" not in describe_output(by_rule)


def test_up_lets_the_models_learn_in_minutes_unless_the_environment_says_otherwise() -> None:
    env, added = demo_learning_env({"JOURNEYFLOW_CONVERT_HORIZON_HOURS": "72", "PATH": "/bin"})
    assert env["JOURNEYFLOW_CONVERT_HORIZON_HOURS"] == "72"  # the user's own setting stands
    assert "JOURNEYFLOW_CONVERT_HORIZON_HOURS" not in added
    assert float(env["JOURNEYFLOW_CHURN_HORIZON_DAYS"]) * 24 == 1.0
    assert env["JOURNEYFLOW_MODEL_MIN_EXAMPLES"] == "100" and env["PATH"] == "/bin"
    settings = Settings.model_validate(
        {k.removeprefix("JOURNEYFLOW_").lower(): v for k, v in env.items() if k in added}
    )
    assert settings.churn_horizon_days == 1 / 24 and settings.decision_spacing_minutes == 10


def test_up_says_each_demo_setting_in_words() -> None:
    from streams.cli import DEMO_LEARNING, DEMO_MEANS

    assert set(DEMO_MEANS) == set(DEMO_LEARNING)
