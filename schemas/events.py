"""Touchpoint event v1: what producers publish to ``journeyflow.touchpoints``.

One pydantic model per family of event types, joined in a union discriminated
on ``event_type`` (``custom.<name>`` events share one free-form model).
Unknown extra fields are kept, not rejected, so producers can send more than
v1 names; wrong types and missing required fields are rejected with the field
named. Money is integer minor units (fen).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    field_validator,
)

from schemas.vocabulary import (
    CUSTOM_PREFIX,
    SCOPED_IDENTITY_TYPES,
    Channel,
    IdentityType,
)

SCHEMA_VERSION = 1

_CUSTOM_NAME = re.compile(r"^custom\.[a-z0-9][a-z0-9_.-]{0,63}$")

Money = Annotated[int, Field(strict=True, ge=0, description="Integer minor units (fen).")]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. CNY.")]


class _Open(BaseModel):
    """Base for payload parts: unknown extra fields are kept."""

    model_config = ConfigDict(extra="allow", frozen=True)


class Context(_Open):
    live_room_id: str | None = None
    store_id: str | None = None
    group_id: str | None = None
    campaign_id: str | None = None
    sales_rep_id: str | None = None
    timezone: str = "Asia/Shanghai"

    @field_validator("timezone")
    @classmethod
    def _iana(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        # OSError: a name that is a tzdata directory ("Asia") or too long for a path
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise ValueError(f"unknown IANA timezone {value!r}") from exc
        return value


class NoProperties(_Open):
    pass


class WatchProperties(_Open):
    watch_seconds: Annotated[int, Field(ge=0)]


class TextProperties(_Open):
    text: Annotated[str, Field(max_length=4000)]


class SkuProperties(_Open):
    sku: Annotated[str, Field(min_length=1)]


class CouponProperties(_Open):
    coupon_id: Annotated[str, Field(min_length=1)]


class ChatMessageProperties(_Open):
    text: Annotated[str, Field(max_length=4000)]
    intent: str | None = None
    sentiment: Annotated[float, Field(ge=-1.0, le=1.0)] | None = None


class TransactionProperties(_Open):
    order_id: Annotated[str, Field(min_length=1)]
    amount_minor: Money
    currency: Currency = "CNY"


class RefundProperties(_Open):
    order_id: Annotated[str, Field(min_length=1)]
    amount_minor: Money | None = None
    currency: Currency = "CNY"


class ConsentProperties(_Open):
    channel: Channel
    purpose: Annotated[str, Field(min_length=1)]


class _Touchpoint(_Open):
    """Fields every touchpoint carries."""

    schema_version: Literal[1] = 1
    event_id: Annotated[str, Field(min_length=1, max_length=128)]
    event_type: str
    channel: Channel
    occurred_at: AwareDatetime
    identities: Annotated[dict[IdentityType, str], Field(min_length=1)]
    context: Context = Context()
    properties: Any = None

    @field_validator("occurred_at", mode="before")
    @classmethod
    def _rfc3339(cls, value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError(
                "must be an RFC 3339 string with an offset, e.g. 2026-11-23T20:00:00+08:00"
            )
        return value

    @field_validator("identities")
    @classmethod
    def _identity_values(cls, value: dict[str, str]) -> dict[str, str]:
        for kind, ident in value.items():
            if not ident or len(ident) > 256:
                raise ValueError(f"{kind}: identifier must be 1-256 characters")
            if kind in SCOPED_IDENTITY_TYPES:
                scope, sep, local = ident.partition(":")
                if not sep or not scope or not local:
                    raise ValueError(
                        f"{kind}: must carry its app or platform as a prefix, "
                        f"e.g. 'douyin:88231' (got {ident!r})"
                    )
        return value


class SimpleEvent(_Touchpoint):
    event_type: Literal[
        "live.view_start",
        "live.like",
        "live.share",
        "group.join",
        "group.leave",
        "group.link_click",
        "group.mini_program_open",
        "store.check_in",
        "store.consult",
        "store.trial",
        "chat.session_start",
        "chat.handoff",
        "chat.lead_submitted",
        "page.view",
        "ad.impression",
        "ad.click",
        "privacy.erase",
    ]
    properties: NoProperties = NoProperties()


class ViewEndEvent(_Touchpoint):
    event_type: Literal["live.view_end"]
    properties: WatchProperties


class TextEvent(_Touchpoint):
    event_type: Literal["live.comment", "group.message"]
    properties: TextProperties


class SkuEvent(_Touchpoint):
    event_type: Literal["live.product_click", "live.add_to_cart", "product.view", "cart.add"]
    properties: SkuProperties


class CouponEvent(_Touchpoint):
    event_type: Literal["live.coupon_claim"]
    properties: CouponProperties


class ChatMessageEvent(_Touchpoint):
    event_type: Literal["chat.message"]
    properties: ChatMessageProperties


class TransactionEvent(_Touchpoint):
    event_type: Literal["live.order", "store.purchase", "order.paid"]
    properties: TransactionProperties


class RefundEvent(_Touchpoint):
    event_type: Literal["store.return", "order.refund"]
    properties: RefundProperties


class ConsentEvent(_Touchpoint):
    event_type: Literal["consent.granted", "consent.revoked"]
    properties: ConsentProperties


class CustomEvent(_Touchpoint):
    """A brand-specific ``custom.<name>`` event with free-form properties."""

    event_type: Annotated[str, Field(pattern=_CUSTOM_NAME.pattern)]
    properties: dict[str, Any] = Field(default_factory=dict)


_FAMILIES: tuple[type[_Touchpoint], ...] = (
    SimpleEvent,
    ViewEndEvent,
    TextEvent,
    SkuEvent,
    CouponEvent,
    ChatMessageEvent,
    TransactionEvent,
    RefundEvent,
    ConsentEvent,
)

#: event_type -> the tag of the model that validates it.
_TAG_OF: dict[str, str] = {
    name: family.__name__
    for family in _FAMILIES
    for name in family.model_fields["event_type"].annotation.__args__  # type: ignore[union-attr]
}


def _event_tag(value: Any) -> str | None:
    event_type = value.get("event_type") if isinstance(value, dict) else value.event_type
    if not isinstance(event_type, str):
        return None
    if event_type.startswith(CUSTOM_PREFIX):
        return "CustomEvent"
    return _TAG_OF.get(event_type)


Touchpoint = Annotated[
    Annotated[SimpleEvent, Tag("SimpleEvent")]
    | Annotated[ViewEndEvent, Tag("ViewEndEvent")]
    | Annotated[TextEvent, Tag("TextEvent")]
    | Annotated[SkuEvent, Tag("SkuEvent")]
    | Annotated[CouponEvent, Tag("CouponEvent")]
    | Annotated[ChatMessageEvent, Tag("ChatMessageEvent")]
    | Annotated[TransactionEvent, Tag("TransactionEvent")]
    | Annotated[RefundEvent, Tag("RefundEvent")]
    | Annotated[ConsentEvent, Tag("ConsentEvent")]
    | Annotated[CustomEvent, Tag("CustomEvent")],
    Discriminator(
        _event_tag,
        custom_error_type="unknown_event_type",
        custom_error_message="event_type is missing or not in vocabulary v1 "
        "(use custom.<name> for brand-specific events)",
    ),
]
"""Any touchpoint event of schema v1."""

TouchpointAdapter: TypeAdapter[Touchpoint] = TypeAdapter(Touchpoint)

#: The common base, for type hints of code that handles any touchpoint.
TouchpointEvent = _Touchpoint
