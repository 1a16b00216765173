"""journeyflow event contracts: pydantic v2 models, the codec, and the
generated JSON Schema files under ``schemas/json/``."""

from __future__ import annotations

from schemas.codec import InvalidEvent, decode_touchpoint, encode
from schemas.events import SCHEMA_VERSION, Touchpoint, TouchpointAdapter, TouchpointEvent
from schemas.outputs import Action, Alert, DeadLetter, Feedback, LiveTrigger

__all__ = [
    "SCHEMA_VERSION",
    "Action",
    "Alert",
    "DeadLetter",
    "Feedback",
    "InvalidEvent",
    "LiveTrigger",
    "Touchpoint",
    "TouchpointAdapter",
    "TouchpointEvent",
    "decode_touchpoint",
    "encode",
]
