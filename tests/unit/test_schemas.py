"""The event contract: golden touchpoints round-trip, bad events are rejected
with the field named, the committed JSON Schema files match the models, and
output models are as strict as their configs say."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from factories import event_dict
from pydantic import ValidationError

from schemas import generate
from schemas.codec import InvalidEvent, decode_feedback, decode_touchpoint, encode
from schemas.outputs import Action, Alert, DeadLetter, LiveTrigger

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "touchpoints"
GOLDEN = sorted(FIXTURES.glob("*.json"))
FAMILIES = {
    "live.comment",
    "live.view_end",
    "chat.message",
    "store.purchase",
    "order.refund",
    "consent.granted",
    "custom.xyz",
    "group.join",
}


def _contains(big: Any, small: Any, path: str = "") -> None:
    """Assert every key and value of ``small`` is in ``big`` (recursively)."""
    if isinstance(small, dict):
        assert isinstance(big, dict), path
        for key, value in small.items():
            assert key in big, f"{path}.{key} was dropped"
            _contains(big[key], value, f"{path}.{key}")
    else:
        assert big == small, f"{path}: {big!r} != {small!r}"


def test_there_is_one_golden_fixture_per_event_family() -> None:
    assert {p.stem for p in GOLDEN} == FAMILIES
    for path in GOLDEN:
        assert orjson.loads(path.read_bytes())["event_type"] == path.stem


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_golden_fixture_round_trips_and_keeps_unknown_fields(path: Path) -> None:
    raw = path.read_bytes()
    original = orjson.loads(raw)

    event = decode_touchpoint(raw)
    again = decode_touchpoint(encode(event))

    assert again == event
    assert encode(again) == encode(event)
    # Every field the producer sent survives, including the ones v1 does not name.
    written = orjson.loads(encode(event))
    sent_at = datetime.fromisoformat(original.pop("occurred_at"))
    assert datetime.fromisoformat(written.pop("occurred_at")) == sent_at
    _contains(written, original)


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_golden_fixtures_exercise_unknown_fields_everywhere(path: Path) -> None:
    """Guard the round-trip test above: each fixture carries extras at top
    level, in context and in properties, so dropping them would be caught."""
    event = decode_touchpoint(path.read_bytes())
    assert event.model_extra
    assert event.context.model_extra
    props = event.properties
    assert props if isinstance(props, dict) else props.model_extra


def _rejection(obj: dict[str, Any]) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        decode_touchpoint(orjson.dumps(obj))
    return info.value


def _fields(exc: InvalidEvent) -> list[str]:
    return [e.field for e in exc.errors]


def test_missing_event_id_is_named() -> None:
    obj = event_dict("live.comment")
    del obj["event_id"]
    exc = _rejection(obj)
    assert exc.code == "schema_violation"
    assert _fields(exc) == ["event_id"]


@pytest.mark.parametrize("amount", ["99.00", 99.5, 99.0, True], ids=repr)
def test_money_must_be_an_integer_of_minor_units(amount: Any) -> None:
    exc = _rejection(event_dict("store.purchase", amount_minor=amount))
    assert exc.code == "schema_violation"
    assert _fields(exc) == ["properties.amount_minor"]
    assert exc.event_id is not None  # the dead letter can still name the event


def test_integer_money_is_accepted() -> None:
    event = decode_touchpoint(orjson.dumps(event_dict("store.purchase", amount_minor=9900)))
    assert event.properties.amount_minor == 9900


def test_unknown_channel_is_named() -> None:
    exc = _rejection(event_dict("live.comment", event_channel="tiktok"))
    assert exc.code == "schema_violation"
    assert _fields(exc) == ["channel"]


@pytest.mark.parametrize("event_type", ["live.dance", "custom.", "Custom.Xyz", ""])
def test_unknown_event_type_has_its_own_code(event_type: str) -> None:
    obj = event_dict("live.comment")
    obj["event_type"] = event_type
    exc = _rejection(obj)
    assert exc.code == "unknown_event_type"
    assert _fields(exc) == ["event_type"]


def test_missing_event_type_is_unknown_event_type() -> None:
    obj = event_dict("live.comment")
    del obj["event_type"]
    assert _rejection(obj).code == "unknown_event_type"


def test_naive_occurred_at_is_rejected() -> None:
    obj = event_dict("live.comment")
    obj["occurred_at"] = "2026-11-23T20:00:00"
    exc = _rejection(obj)
    assert exc.code == "schema_violation"
    assert _fields(exc) == ["occurred_at"]


def test_empty_identities_are_rejected() -> None:
    exc = _rejection(event_dict("live.comment", identities={}))
    assert _fields(exc) == ["identities"]


def test_unknown_identity_type_is_named() -> None:
    exc = _rejection(event_dict("live.comment", identities={"email": "a@example.com"}))
    assert exc.code == "schema_violation"
    [field] = _fields(exc)
    assert field.startswith("identities.email")


@pytest.mark.parametrize("kind", ["live_viewer_id", "wechat_openid"])
@pytest.mark.parametrize("value", ["88231", ":88231", "douyin:"])
def test_scoped_identifiers_need_their_platform_prefix(kind: str, value: str) -> None:
    exc = _rejection(event_dict("live.comment", identities={kind: value}))
    assert exc.code == "schema_violation"
    assert _fields(exc) == ["identities"]
    assert kind in exc.errors[0].message


@pytest.mark.parametrize("sentiment", [1.01, -1.5])
def test_sentiment_outside_minus_one_to_one_is_rejected(sentiment: float) -> None:
    exc = _rejection(event_dict("chat.message", sentiment=sentiment))
    assert _fields(exc) == ["properties.sentiment"]


@pytest.mark.parametrize("sentiment", [-1, -1.0, 0, 1.0])
def test_sentiment_bounds_are_inclusive(sentiment: float) -> None:
    event = decode_touchpoint(orjson.dumps(event_dict("chat.message", sentiment=sentiment)))
    assert event.properties.sentiment == sentiment


# "Asia" is a tzdata directory and "x" * 300 is too long for a file name:
# both used to escape as OSError instead of a field error.
@pytest.mark.parametrize("tz", ["Mars/Olympus_Mons", "Asia", "", "../../etc/passwd", "x" * 300])
def test_bad_timezone_is_named(tz: str) -> None:
    exc = _rejection(event_dict("live.comment", context={"timezone": tz}))
    assert exc.code == "schema_violation"
    assert _fields(exc) == ["context.timezone"]


def test_unsupported_schema_version_has_its_own_code() -> None:
    obj = event_dict("live.comment")
    obj["schema_version"] = 2
    exc = _rejection(obj)
    assert exc.code == "unsupported_schema_version"
    assert _fields(exc) == ["schema_version"]
    assert exc.event_id == obj["event_id"]


def test_wrong_properties_for_the_type_are_named() -> None:
    obj = event_dict("live.view_end")
    obj["properties"] = {"watch_seconds": -1}
    assert _fields(_rejection(obj)) == ["properties.watch_seconds"]
    obj["properties"] = {}
    assert _fields(_rejection(obj)) == ["properties.watch_seconds"]


# --- generated JSON Schema files -------------------------------------------


def test_committed_json_schemas_match_the_models() -> None:
    assert generate.stale() == [], "run: python -m schemas.generate"


def test_staleness_check_names_a_changed_or_missing_file(tmp_path: Path) -> None:
    rendered = generate.render_all()
    for name, text in rendered.items():
        (tmp_path / name).write_text(text, "utf-8")
    assert generate.stale(tmp_path) == []

    changed = tmp_path / "action.v1.schema.json"
    schema = orjson.loads(changed.read_bytes())
    schema["required"].remove("reason")
    changed.write_text(orjson.dumps(schema, option=orjson.OPT_INDENT_2).decode(), "utf-8")
    (tmp_path / "feedback.v1.schema.json").unlink()

    assert sorted(generate.stale(tmp_path)) == ["action.v1.schema.json", "feedback.v1.schema.json"]


def test_touchpoint_schema_names_every_event_family() -> None:
    schema = orjson.loads(generate.render_all()["touchpoint.v1.schema.json"])
    text = orjson.dumps(schema).decode()
    for event_type in FAMILIES - {"custom.xyz"}:
        assert f'"{event_type}"' in text


# --- output models -----------------------------------------------------------

_COMMON: dict[str, Any] = {
    "id": "out-1",
    "customer_id": "member_id:M-77",
    "cause_event_id": "ev-1",
    "rule_id": "r1",
    "decided_at": "2026-11-23T20:00:00+08:00",
    "reason": "because",
}

_OUTPUTS: list[tuple[type[Any], dict[str, Any]]] = [
    (Action, {**_COMMON, "action": "send_coupon"}),
    (Alert, {**_COMMON, "alert_type": "vip_arrival", "routing_key": "store-1"}),
    (LiveTrigger, {**_COMMON, "trigger_type": "price_question", "live_room_id": "room-1"}),
    (
        DeadLetter,
        {
            "id": "dl-1",
            "reason_code": "malformed_json",
            "reason": "not JSON",
            "source_topic": "journeyflow.touchpoints",
            "source_partition": 0,
            "source_offset": 7,
            "original_b64": "e30=",
        },
    ),
]


@pytest.mark.parametrize(("model", "data"), _OUTPUTS, ids=lambda v: getattr(v, "__name__", ""))
def test_outputs_accept_a_complete_record_and_round_trip(
    model: type[Any], data: dict[str, Any]
) -> None:
    out = model.model_validate(data)
    assert model.model_validate_json(encode(out)) == out


@pytest.mark.parametrize(("model", "data"), _OUTPUTS, ids=lambda v: getattr(v, "__name__", ""))
def test_outputs_reject_unknown_fields(model: type[Any], data: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as info:
        model.model_validate({**data, "surprise": 1})
    assert [e["loc"] for e in info.value.errors()] == [("surprise",)]


@pytest.mark.parametrize(("model", "data"), _OUTPUTS, ids=lambda v: getattr(v, "__name__", ""))
@pytest.mark.parametrize("missing", ["id", "reason"])
def test_outputs_reject_missing_required_fields(
    model: type[Any], data: dict[str, Any], missing: str
) -> None:
    with pytest.raises(ValidationError) as info:
        model.model_validate({k: v for k, v in data.items() if k != missing})
    assert [e["loc"] for e in info.value.errors()] == [(missing,)]


@pytest.mark.parametrize("model", [Action, Alert, LiveTrigger], ids=lambda m: m.__name__)
@pytest.mark.parametrize("missing", ["cause_event_id", "decided_at", "customer_id"])
def test_decisions_must_name_their_cause_and_time(model: type[Any], missing: str) -> None:
    data = dict(next(d for m, d in _OUTPUTS if m is model))
    del data[missing]
    with pytest.raises(ValidationError):
        model.model_validate(data)


def test_decision_time_must_carry_an_offset() -> None:
    with pytest.raises(ValidationError):
        Action.model_validate({**_COMMON, "action": "a", "decided_at": "2026-11-23T20:00:00"})


def test_outputs_encode_without_unset_optional_fields() -> None:
    written = orjson.loads(encode(Action.model_validate({**_COMMON, "action": "a"})))
    assert "model_version" not in written
    assert "emitted_at" not in written
    assert written["kind"] == "action"
    assert written["schema_version"] == 1


_FEEDBACK = {
    "feedback_id": "fb-1",
    "action_id": "out-1",
    "customer_id": "member_id:M-77",
    "outcome": "clicked",
    "occurred_at": "2026-11-23T20:05:00+08:00",
}


def test_feedback_keeps_unknown_fields() -> None:
    feedback = decode_feedback(orjson.dumps({**_FEEDBACK, "campaign": "c-9"}))
    assert feedback.model_extra == {"campaign": "c-9"}
    assert orjson.loads(encode(feedback))["campaign"] == "c-9"


@pytest.mark.parametrize("missing", ["action_id", "outcome", "occurred_at"])
def test_feedback_rejects_missing_fields_with_the_field_named(missing: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_feedback(orjson.dumps({k: v for k, v in _FEEDBACK.items() if k != missing}))
    assert [e.field for e in info.value.errors] == [missing]


def test_feedback_rejects_an_unknown_outcome() -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_feedback(orjson.dumps({**_FEEDBACK, "outcome": "loved_it"}))
    assert [e.field for e in info.value.errors] == ["outcome"]
