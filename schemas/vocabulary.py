"""Vocabulary v1: channels, identity types and event types.

Extend these lists; never rename an entry (that is a contract change and needs
a schema version bump). Identity types are ordered strongest first: when an
event carries several identifiers, the strongest one names the customer until
One-ID resolution links them.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

Channel = Literal[
    "livestream",
    "wechat_group",
    "store",
    "chatbot",
    "mini_program",
    "ecommerce",
    "ad",
]
CHANNELS: Final[tuple[str, ...]] = get_args(Channel)

#: Where an action (``journeyflow.actions``) is delivered: WeCom private
#: chat, SMS, a mini-program subscription message, a pop-up in the live room,
#: a task for a store guide, a message in a WeChat group.
DeliveryChannel = Literal[
    "wecom",
    "sms",
    "mini_program_message",
    "live_popup",
    "store_task",
    "group_message",
]
DELIVERY_CHANNELS: Final[tuple[str, ...]] = get_args(DeliveryChannel)

IdentityType = Literal[
    "member_id",
    "wechat_unionid",
    "phone",
    "wecom_external_userid",
    "wechat_openid",
    "live_viewer_id",
    "chatbot_user_id",
    "device_id",
]
#: Strongest first. The index is the strength rank (0 = strongest).
IDENTITY_TYPES: Final[tuple[str, ...]] = get_args(IdentityType)

#: Identity types whose values are only unique inside an app or platform and
#: therefore carry it as a prefix: ``<appid>:<openid>``, ``<platform>:<id>``.
SCOPED_IDENTITY_TYPES: Final[frozenset[str]] = frozenset({"wechat_openid", "live_viewer_id"})

#: Identity types whose values are personal data and are keyed-hashed at ingest.
HASHED_IDENTITY_TYPES: Final[frozenset[str]] = frozenset({"phone"})

LIVE_EVENTS: Final = (
    "live.view_start",
    "live.view_end",
    "live.comment",
    "live.like",
    "live.share",
    "live.product_click",
    "live.add_to_cart",
    "live.coupon_claim",
    "live.order",
)
GROUP_EVENTS: Final = (
    "group.join",
    "group.leave",
    "group.message",
    "group.link_click",
    "group.mini_program_open",
)
STORE_EVENTS: Final = (
    "store.check_in",
    "store.consult",
    "store.trial",
    "store.purchase",
    "store.return",
)
CHAT_EVENTS: Final = ("chat.session_start", "chat.message", "chat.handoff", "chat.lead_submitted")
COMMERCE_EVENTS: Final = ("page.view", "product.view", "cart.add", "order.paid", "order.refund")
AD_EVENTS: Final = ("ad.impression", "ad.click")
PRIVACY_EVENTS: Final = ("consent.granted", "consent.revoked", "privacy.erase")

#: Every named event type of v1. ``custom.<name>`` events are accepted besides.
EVENT_TYPES: Final[tuple[str, ...]] = (
    LIVE_EVENTS
    + GROUP_EVENTS
    + STORE_EVENTS
    + CHAT_EVENTS
    + COMMERCE_EVENTS
    + AD_EVENTS
    + PRIVACY_EVENTS
)

#: Transactions: one per ``order_id`` whatever channel reports it.
TRANSACTION_EVENTS: Final[frozenset[str]] = frozenset(
    {"live.order", "store.purchase", "order.paid"}
)

CUSTOM_PREFIX: Final = "custom."

#: The key of a custom event type once counted: all brand-specific events share
#: one counter bucket so a producer inventing names cannot grow state.
CUSTOM_BUCKET: Final = "custom.*"
