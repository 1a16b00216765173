"""Bytes <-> models: the one place payloads are decoded and encoded.

Decoding never raises anything but :class:`InvalidEvent`, whose ``code``
names the dead-letter reason and whose ``errors`` name each bad field.

>>> raw = (b'{"event_id":"e1","event_type":"live.comment","channel":"livestream",'
...        b'"occurred_at":"2026-11-23T20:00:00+08:00","identities":{"live_viewer_id":"douyin:1"},'
...        b'"properties":{"text":"how much?"}}')
>>> decode_touchpoint(raw).properties.text
'how much?'
>>> try:
...     decode_touchpoint(b'{"event_id":"e2"}')
... except InvalidEvent as exc:
...     print(exc.code, sorted(e.field for e in exc.errors))
unknown_event_type ['event_type']
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from schemas.errors import SchemaError
from schemas.events import SCHEMA_VERSION, TouchpointAdapter, TouchpointEvent
from schemas.outputs import DeadLetterReason, Feedback, FieldError

_TAGS = frozenset(
    {
        "SimpleEvent",
        "ViewEndEvent",
        "TextEvent",
        "SkuEvent",
        "CouponEvent",
        "ChatMessageEvent",
        "TransactionEvent",
        "RefundEvent",
        "ConsentEvent",
        "CustomEvent",
    }
)


class InvalidEvent(SchemaError):
    """A payload that does not meet the contract; ``code`` is the DLQ reason."""

    def __init__(
        self,
        code: DeadLetterReason,
        message: str,
        errors: list[FieldError] | None = None,
        event_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code: DeadLetterReason = code
        self.message = message
        self.errors = errors or []
        self.event_id = event_id


def field_errors(exc: ValidationError) -> list[FieldError]:
    """Flatten pydantic errors to ``field: message`` pairs with dotted paths."""
    out: list[FieldError] = []
    for err in exc.errors(include_url=False):
        loc = [str(part) for part in err["loc"]]
        if loc and loc[0] in _TAGS:
            loc = loc[1:]
        if err["type"] == "unknown_event_type":
            loc = ["event_type"]
        out.append(FieldError(field=".".join(loc) or "(root)", message=err["msg"]))
    return out


def decode_json(raw: bytes) -> Any:
    """Parse JSON bytes or raise ``InvalidEvent('malformed_json')``."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("malformed_json", f"not valid UTF-8 JSON: {exc}") from None


def validate_touchpoint(obj: Any) -> TouchpointEvent:
    """Validate a decoded JSON value as a touchpoint v1."""
    if not isinstance(obj, dict):
        raise InvalidEvent("not_an_object", "a touchpoint must be a JSON object")
    event_id = obj.get("event_id") if isinstance(obj.get("event_id"), str) else None
    version = obj.get("schema_version", SCHEMA_VERSION)
    if type(version) is not int or version != SCHEMA_VERSION:
        raise InvalidEvent(
            "unsupported_schema_version",
            f"schema_version {version!r} is not supported (this worker reads {SCHEMA_VERSION})",
            [FieldError(field="schema_version", message=f"expected {SCHEMA_VERSION}")],
            event_id,
        )
    try:
        event: TouchpointEvent = TouchpointAdapter.validate_python(obj)
    except ValidationError as exc:
        errors = field_errors(exc)
        code: DeadLetterReason = (
            "unknown_event_type"
            if any(e.field == "event_type" for e in errors)
            else "schema_violation"
        )
        summary = "; ".join(f"{e.field}: {e.message}" for e in errors[:5])
        raise InvalidEvent(code, summary, errors, event_id) from None
    return event


def decode_touchpoint(raw: bytes) -> TouchpointEvent:
    """Decode and validate one touchpoint from its JSON bytes."""
    return validate_touchpoint(decode_json(raw))


def decode_feedback(raw: bytes) -> Feedback:
    try:
        return Feedback.model_validate_json(raw)
    except ValidationError as exc:
        errors = field_errors(exc)
        raise InvalidEvent("schema_violation", str(errors[:1]), errors) from None


def encode(model: BaseModel) -> bytes:
    """Encode any model to compact UTF-8 JSON, omitting unset optional fields."""
    return model.__pydantic_serializer__.to_json(model, exclude_none=True)


def dump(model: BaseModel) -> dict[str, Any]:
    """The JSON-ready dict of a model (what :func:`encode` writes)."""
    return model.model_dump(mode="json", exclude_none=True)
