"""Ingest: raw bytes become an admitted, PII-safe event keyed by customer, or a
dead letter that keeps the original bytes and says where they came from."""

from __future__ import annotations

import base64
from datetime import timedelta

import orjson
import pytest
from factories import KEY, POLICY, T0, TOPIC, epoch_ms, event_dict, make_raw, meta

from schemas.outputs import DeadLetter
from streams.core.ids import dead_letter_id
from streams.core.ingest import Admitted, IngestPolicy, RecordMeta, admit
from streams.core.pii import PiiKey

PHONE = "13800138000"
PHONE_WAYS = ["13800138000", "+86 138-0013-8000", "0086 138 0013 8000", "+8613800138000"]


def _admit(raw: bytes, policy: IngestPolicy = POLICY) -> Admitted:
    result = admit(raw, meta(timestamp_ms=epoch_ms(T0)), policy)
    assert isinstance(result, Admitted), result
    return result


def _reject(raw: bytes, record: RecordMeta | None = None) -> DeadLetter:
    result = admit(raw, record or meta(17, timestamp_ms=epoch_ms(T0), partition=3), POLICY)
    assert isinstance(result, DeadLetter), result
    return result


# --- admitted events ---------------------------------------------------------


def test_valid_event_is_admitted_with_its_phone_hashed() -> None:
    admitted = _admit(make_raw("store.check_in", identities={"phone": "+86 138-0013-8000"}))

    hashed = admitted.event.identities["phone"]
    assert hashed.startswith(f"{KEY.key_id}:")
    assert admitted.customer_id == f"phone:{hashed}"
    assert admitted.occurred_ms == epoch_ms(T0)
    record = admitted.to_bytes()
    for leak in (PHONE.encode(), b"138-0013-8000", b"8613800138000", KEY.secret):
        assert leak not in record
        assert leak not in admitted.customer_id.encode()


def test_only_the_phone_is_replaced_in_the_internal_record() -> None:
    raw = make_raw(
        "store.purchase",
        identities={"member_id": "M-77", "phone": "0086 138 0013 8000"},
        context={"store_id": "store-1"},
    )
    admitted = _admit(raw)
    written = orjson.loads(admitted.to_bytes())
    assert written["identities"] == {
        "member_id": "M-77",  # member ids are pseudonymous: kept as they are
        "phone": admitted.event.identities["phone"],
    }
    # everything else is carried unchanged (context gains its default timezone)
    assert written["properties"] == orjson.loads(raw)["properties"]
    assert written["context"] == {"store_id": "store-1", "timezone": "Asia/Shanghai"}
    assert written["event_id"] == orjson.loads(raw)["event_id"]


@pytest.mark.parametrize("written", PHONE_WAYS[1:])
def test_one_phone_written_many_ways_is_one_customer(written: str) -> None:
    plain = _admit(make_raw("store.check_in", identities={"phone": PHONE_WAYS[0]}))
    other = _admit(make_raw("store.check_in", identities={"phone": written}))
    assert other.customer_id == plain.customer_id


def test_different_phones_are_different_customers() -> None:
    a = _admit(make_raw("store.check_in", identities={"phone": "13800138000"}))
    b = _admit(make_raw("store.check_in", identities={"phone": "13800138001"}))
    assert a.customer_id != b.customer_id


@pytest.mark.parametrize(
    "other_key",
    [PiiKey(KEY.key_id, b"another-secret"), PiiKey("test-k2", KEY.secret)],
    ids=["secret", "key_id"],
)
def test_a_different_key_gives_a_different_hash(other_key: PiiKey) -> None:
    raw = make_raw("store.check_in", identities={"phone": PHONE})
    ours = _admit(raw).customer_id
    theirs = _admit(raw, IngestPolicy(other_key)).customer_id
    assert theirs != ours
    assert theirs.startswith(f"phone:{other_key.key_id}:")


@pytest.mark.parametrize(
    ("identities", "customer"),
    [
        (
            {"live_viewer_id": "douyin:88231", "phone": PHONE, "member_id": "M-77"},
            "member_id:M-77",
        ),
        ({"live_viewer_id": "douyin:88231", "phone": PHONE}, "phone:"),
        ({"device_id": "d-1", "live_viewer_id": "douyin:88231"}, "live_viewer_id:douyin:88231"),
        ({"wechat_openid": "wx1:o-1", "wechat_unionid": "u-1"}, "wechat_unionid:u-1"),
    ],
)
def test_the_strongest_identifier_names_the_customer(
    identities: dict[str, str], customer: str
) -> None:
    admitted = _admit(make_raw("live.comment", identities=identities))
    if customer == "phone:":
        assert admitted.customer_id == f"phone:{admitted.event.identities['phone']}"
    else:
        assert admitted.customer_id == customer
    # every identifier is kept (normalised) for One-ID to link later
    assert set(admitted.event.identities) == set(identities)


def test_platform_prefix_is_case_insensitive_and_spaces_are_trimmed() -> None:
    a = _admit(make_raw("live.like", identities={"live_viewer_id": "douyin:88231"}))
    b = _admit(make_raw("live.like", identities={"live_viewer_id": " Douyin:88231 "}))
    assert a.customer_id == b.customer_id == "live_viewer_id:douyin:88231"


def test_internal_record_reads_back_as_the_same_event() -> None:
    admitted = _admit(make_raw("store.purchase", identities={"phone": PHONE, "member_id": "M-1"}))
    back = Admitted.from_internal(admitted.to_bytes(), admitted.customer_id, admitted.source)
    assert back == admitted


# --- event time against the Kafka record time --------------------------------


def test_occurred_at_far_ahead_of_the_record_time_is_a_dead_letter() -> None:
    skew = timedelta(milliseconds=POLICY.max_future_skew_ms)
    raw = make_raw("live.comment", event_id="ev-future", at=T0 + skew + timedelta(seconds=1))

    dead = _reject(raw, meta(5, timestamp_ms=epoch_ms(T0)))

    assert dead.reason_code == "future_timestamp"
    assert [e.field for e in dead.errors] == ["occurred_at"]
    assert dead.event_id == "ev-future"
    assert dead.record_timestamp_ms == epoch_ms(T0)


@pytest.mark.parametrize(
    "offset", [timedelta(0), timedelta(minutes=5), -timedelta(days=30)], ids=str
)
def test_occurred_at_within_the_skew_or_in_the_past_is_admitted(offset: timedelta) -> None:
    raw = make_raw("live.comment", at=T0 + offset)
    result = admit(raw, meta(timestamp_ms=epoch_ms(T0)), POLICY)
    assert isinstance(result, Admitted)
    assert result.occurred_ms == epoch_ms(T0 + offset)


def test_the_skew_is_a_policy_setting() -> None:
    raw = make_raw("live.comment", at=T0 + timedelta(minutes=1))
    strict = IngestPolicy(KEY, max_future_skew_ms=0)
    assert isinstance(admit(raw, meta(timestamp_ms=epoch_ms(T0)), strict), DeadLetter)
    assert isinstance(admit(raw, meta(timestamp_ms=epoch_ms(T0)), POLICY), Admitted)


# --- dead letters ------------------------------------------------------------

_BAD_INPUTS = [
    (b"{not json", "malformed_json"),
    (b"", "malformed_json"),
    (b'\xff\xfe{"event_id": "x"}', "malformed_json"),
    (b"[1, 2, 3]", "not_an_object"),
    (b'"live.comment"', "not_an_object"),
    (b"null", "not_an_object"),
    (b"{}", "unknown_event_type"),
    (make_raw("store.purchase", amount_minor="99.00"), "schema_violation"),
    (make_raw("live.comment", identities={"phone": "12345"}), "invalid_identifier"),
    (make_raw("live.comment", identities={"member_id": "   "}), "invalid_identifier"),
    # the journeys table keys window pages <customer id>\x00w<n>: no NUL in a customer id
    (make_raw("live.comment", identities={"member_id": "M-1\x00w0"}), "invalid_identifier"),
]


@pytest.mark.parametrize(("raw", "code"), _BAD_INPUTS, ids=[c for _, c in _BAD_INPUTS])
def test_bad_input_becomes_a_dead_letter_that_keeps_the_exact_bytes(raw: bytes, code: str) -> None:
    record = RecordMeta(TOPIC, 3, 17, epoch_ms(T0) + 123)

    dead = _reject(raw, record)

    assert dead.reason_code == code
    assert dead.reason
    assert base64.b64decode(dead.original_b64, validate=True) == raw
    assert (dead.source_topic, dead.source_partition, dead.source_offset) == (TOPIC, 3, 17)
    assert dead.record_timestamp_ms == epoch_ms(T0) + 123
    # what goes to the DLQ topic is valid against the dead-letter schema
    assert DeadLetter.model_validate_json(orjson.dumps(dead.model_dump(mode="json"))) == dead


def test_invalid_phone_names_the_field_without_repeating_the_number() -> None:
    raw = make_raw("live.comment", event_id="ev-bad-phone", identities={"phone": "138-0013-800"})
    dead = _reject(raw)
    assert dead.reason_code == "invalid_identifier"
    assert [e.field for e in dead.errors] == ["identities.phone"]
    assert dead.event_id == "ev-bad-phone"
    shown = dead.reason + "".join(e.message for e in dead.errors)
    assert "0013" not in shown


def test_schema_violation_dead_letter_names_the_field_and_event() -> None:
    obj = event_dict("chat.message", event_id="ev-sent", sentiment=3)
    dead = _reject(orjson.dumps(obj))
    assert dead.reason_code == "schema_violation"
    assert dead.event_id == "ev-sent"
    assert [e.field for e in dead.errors] == ["properties.sentiment"]
    assert "properties.sentiment" in dead.reason


def test_dead_letter_id_is_the_record_position() -> None:
    first = _reject(b"{not json", RecordMeta(TOPIC, 3, 17))
    again = _reject(b"[]", RecordMeta(TOPIC, 3, 17, 1))
    assert first.id == again.id == dead_letter_id(TOPIC, 3, 17)
    others = {
        _reject(b"{not json", RecordMeta(TOPIC, 3, 18)).id,
        _reject(b"{not json", RecordMeta(TOPIC, 4, 17)).id,
        _reject(b"{not json", RecordMeta("other.topic", 3, 17)).id,
    }
    assert first.id not in others
    assert len(others) == 3


# --- the key stays secret ----------------------------------------------------


def test_pii_key_repr_hides_the_secret() -> None:
    key = PiiKey("k-2026", b"very-secret-value")
    for text in (repr(key), str(key), repr(IngestPolicy(key))):
        assert "very-secret-value" not in text
        assert "k-2026" in text
