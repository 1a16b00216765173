"""Normalising and keyed hashing of personal identifiers (phone numbers).

The raw value never leaves this module: callers get the normalised value's
keyed HMAC-SHA256, prefixed with the key id so keys can be rotated.

>>> normalise_phone("+86 138-0013-8000") == normalise_phone("13800138000")
True
>>> normalise_phone("0086 13800138000")
'+8613800138000'
>>> key = PiiKey("k1", b"secret")
>>> h = hash_identifier(key, "phone", "+8613800138000")
>>> h.startswith("k1:") and len(h) == 3 + 32
True
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from streams.core.errors import CoreError

_CN_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_E164 = re.compile(r"^\+[1-9]\d{7,14}$")
_STRIP = re.compile(r"[\s\-().]")
_HASHED = re.compile(r"^[A-Za-z0-9_-]{1,32}:[0-9a-f]{32}$")


class InvalidIdentifier(CoreError):
    """An identifier value that cannot be normalised."""


@dataclass(frozen=True)
class PiiKey:
    """A hashing key: ``key_id`` travels with every hash, ``secret`` never does."""

    key_id: str
    secret: bytes

    def __repr__(self) -> str:  # keep the secret out of logs and tracebacks
        return f"PiiKey(key_id={self.key_id!r}, secret=<hidden>)"


def normalise_phone(raw: str) -> str:
    """Canonical E.164 form. Chinese mobiles may come without the country code."""
    value = _STRIP.sub("", raw)
    if value.startswith("00"):
        value = "+" + value[2:]
    if _CN_MOBILE.match(value):
        return "+86" + value
    if value.startswith("86") and _CN_MOBILE.match(value[2:]):
        return "+" + value
    if _E164.match(value):
        return value
    raise InvalidIdentifier("phone: not a recognisable phone number")


def hash_identifier(key: PiiKey, kind: str, normalised: str) -> str:
    """``<key_id>:<32 hex>``: keyed HMAC-SHA256 of the normalised value."""
    mac = hmac.new(key.secret, f"{kind}:{normalised}".encode(), hashlib.sha256)
    return f"{key.key_id}:{mac.hexdigest()[:32]}"


def is_hashed(value: str) -> bool:
    """Whether ``value`` is already a ``<key_id>:<32 hex>`` hash (never a raw number).

    >>> is_hashed("k1:" + "0" * 32), is_hashed("13800138000")
    (True, False)
    """
    return bool(_HASHED.match(value))
