"""Identifiers, their strength order, and normalisation.

Identifiers are typed (``TYPE:VALUE``) and totally ordered: by type strength
(vocabulary order, ``member_id`` strongest), then by value. A customer is
named by the smallest identifier in this order among those linked to it
(``streams.core.oneid``), so the same identities always give the same id.

>>> customer_id_for({"live_viewer_id": "douyin:1", "member_id": "M-7"})
'member_id:M-7'
>>> parse_typed("phone:138 0013 8000")
('phone', '138 0013 8000')
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from schemas.vocabulary import HASHED_IDENTITY_TYPES, IDENTITY_TYPES, SCOPED_IDENTITY_TYPES
from streams.core.errors import CoreError
from streams.core.pii import (
    InvalidIdentifier,
    PiiKey,
    hash_identifier,
    is_hashed,
    normalise_phone,
)

K = TypeVar("K", bound=str)

_RANK = {kind: rank for rank, kind in enumerate(IDENTITY_TYPES)}


def typed(kind: str, value: str) -> str:
    """The typed form used in keys, URLs and the CLI: ``member_id:M-77``."""
    return f"{kind}:{value}"


def parse_typed(text: str) -> tuple[str, str]:
    """Split ``TYPE:VALUE``; raise CoreError for an unknown type or empty value."""
    kind, sep, value = text.partition(":")
    if not sep or not value:
        raise CoreError(f"identifier must be TYPE:VALUE, e.g. phone:13800138000 (got {text!r})")
    if kind not in _RANK:
        raise CoreError(f"unknown identifier type {kind!r}; known: {', '.join(IDENTITY_TYPES)}")
    return kind, value


def normalise(kind: str, value: str, key: PiiKey) -> str:
    """Canonical, PII-safe value of one identifier (phones come out hashed).
    A NUL character is refused: the journeys table keys a journey's window
    pages as ``<customer id>\\x00w<n>`` (``streams.core.window``)."""
    if "\x00" in value:
        raise InvalidIdentifier(f"{kind}: an identifier may not hold a NUL character")
    value = value.strip()
    if kind in HASHED_IDENTITY_TYPES and is_hashed(value):
        return value  # already hashed (a customer id read from an output or profile)
    if kind == "phone":
        return hash_identifier(key, kind, normalise_phone(value))
    if kind in HASHED_IDENTITY_TYPES:  # pragma: no cover - phone is the only one today
        return hash_identifier(key, kind, value)
    if kind in SCOPED_IDENTITY_TYPES:
        scope, _, local = value.partition(":")
        return f"{scope.strip().lower()}:{local.strip()}"
    if not value:
        raise InvalidIdentifier(f"{kind}: empty identifier")
    return value


def normalise_all(identities: Mapping[K, str], key: PiiKey) -> dict[str, str]:
    """Normalise every identifier of an event, strongest first."""
    ordered = sorted(identities.items(), key=lambda item: _RANK[item[0]])
    return {kind: normalise(kind, value, key) for kind, value in ordered}


def order_key(identifier: str) -> tuple[int, str]:
    """Sort key of a typed identifier: strongest type first, then by value.

    >>> sorted(["phone:x", "member_id:M-9", "member_id:M-10"], key=order_key)
    ['member_id:M-10', 'member_id:M-9', 'phone:x']
    """
    kind, _, value = identifier.partition(":")
    return _RANK.get(kind, len(_RANK)), value


def customer_id_for(identities: Mapping[str, str]) -> str:
    """The strongest (already normalised) identifier of an event, typed: where
    the event enters identity resolution."""
    kind = min(identities, key=_RANK.__getitem__)
    return typed(kind, identities[kind])


def typed_identifiers(identities: Mapping[K, str]) -> tuple[str, ...]:
    """An event's identifiers, typed, strongest first."""
    return tuple(sorted((typed(k, v) for k, v in identities.items()), key=order_key))
