"""Events journeyflow emits (actions, alerts, live triggers, dead letters) and
the feedback marketing automation sends back.

Every output carries its own id (derived from its cause, so re-processing
re-emits the same id and consumers can dedupe), the id of the event that
caused it, the decision time (event time: replaying gives the same outputs),
the model version where a model was used, and a human-readable reason.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.vocabulary import Channel, DeliveryChannel, IdentityType

Severity = Literal["info", "warning", "critical"]


class _Output(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    id: Annotated[str, Field(description="Deterministic: the same cause gives the same id.")]
    customer_id: str
    cause_event_id: str
    rule_id: str
    decided_at: Annotated[
        AwareDatetime, Field(description="Event time of the decision (the cause's occurred_at).")
    ]
    emitted_at: Annotated[
        AwareDatetime | None,
        Field(description="Wall-clock time the worker sent it; not part of replay equality."),
    ] = None
    model_version: str | None = None
    reason: str


class Delivery(BaseModel):
    """How to reach the customer on the action's channel, without raw PII."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: DeliveryChannel
    identifier_type: Annotated[
        IdentityType,
        Field(description="Which of the customer's identifiers the channel delivers to."),
    ]
    identifier: Annotated[
        str,
        Field(
            description="Its value as journeyflow holds it: a WeCom external user id, "
            "an openid (app id in app_id), a member id, or the keyed phone hash the "
            "brand's CRM can match."
        ),
    ]
    app_id: str | None = Field(default=None, description="The app an openid belongs to.")


class Action(_Output):
    """A next-best-action for marketing automation (topic ``journeyflow.actions``).

    Actions chosen from the catalog (``catalog_version`` set) also say how to
    deliver them (``delivery``), when (``not_before``, ``expires_at``), with
    which propensity and probability they were chosen, and why (``reasons``).
    An action with ``holdout`` true is what a holdout customer would have
    received: it is logged on ``journeyflow.holdout``, never delivered.
    """

    kind: Literal["action"] = "action"
    action: Annotated[str, Field(description="What to do, e.g. send_coupon.")]
    channel: Channel | None = Field(default=None, description="Where to reach the customer.")
    priority: int = 0
    params: dict[str, Any] = Field(default_factory=dict)
    delivery: Delivery | None = None
    not_before: AwareDatetime | None = Field(
        default=None, description="Do not deliver earlier (quiet hours defer to here)."
    )
    expires_at: AwareDatetime | None = Field(
        default=None, description="Do not deliver later; report it ignored or failed."
    )
    catalog_version: str | None = None
    segment: str | None = Field(default=None, description="Customer's stage when chosen.")
    propensity: float | None = Field(
        default=None, description="The model (or lead-score) propensity the choice used."
    )
    expected_response: float | None = Field(
        default=None, description="Posterior mean response rate of this action and segment."
    )
    choice_probability: float | None = Field(
        default=None, description="Probability this action was chosen (off-policy evaluation)."
    )
    reasons: list[str] = Field(default_factory=list, description="Top reasons, strongest first.")
    holdout: bool = False


class Alert(_Output):
    """An alert for people (topic ``journeyflow.alerts``), keyed by ``routing_key``."""

    kind: Literal["alert"] = "alert"
    alert_type: str
    severity: Severity = "warning"
    routing_key: Annotated[
        str, Field(description="Who should see it: a store id, a sales rep id, or the customer id.")
    ]
    details: dict[str, Any] = Field(default_factory=dict)


class LiveTrigger(_Output):
    """A real-time cue for a livestream team (topic ``journeyflow.live-triggers``),
    keyed by ``live_room_id``."""

    kind: Literal["live_trigger"] = "live_trigger"
    trigger_type: str
    live_room_id: str
    details: dict[str, Any] = Field(default_factory=dict)


class Merge(BaseModel):
    """One-ID: two customers turned out to be one person (published on
    ``journeyflow.merges``, keyed by the survivor).

    The absorbed customer's journey is folded into the survivor's, and every
    later event for any of its identifiers lands on the survivor. The
    survivor is the strongest of the linked identifiers (vocabulary order,
    then value), so the same identities always end with the same customer.
    A survivor may itself be absorbed later: follow the chain.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    kind: Literal["merge"] = "merge"
    id: Annotated[str, Field(description="Deterministic: survivor, absorbed and cause.")]
    survivor: Annotated[str, Field(description="Customer id that keeps the journey.")]
    absorbed: Annotated[str, Field(description="Customer id that no longer exists on its own.")]
    absorbed_identifiers: Annotated[
        list[str], Field(description="Identifiers that now belong to the survivor (PII hashed).")
    ]
    cause_event_id: Annotated[str, Field(description="The event that linked the two.")]
    decided_at: Annotated[AwareDatetime, Field(description="Event time of the linking event.")]
    emitted_at: AwareDatetime | None = None
    reason: str


DeadLetterReason = Literal[
    "malformed_json",
    "not_an_object",
    "schema_violation",
    "unknown_event_type",
    "unsupported_schema_version",
    "future_timestamp",
    "too_late",
    "invalid_identifier",
]


class FieldError(BaseModel):
    model_config = ConfigDict(frozen=True)

    field: str
    message: str


class DeadLetter(BaseModel):
    """An input that could not be processed (topic ``journeyflow.dlq``).

    Keeps the original bytes (base64) for repair; the DLQ topic has a bounded
    retention, which is part of the erasure promise.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    kind: Literal["dead_letter"] = "dead_letter"
    id: str
    reason_code: DeadLetterReason
    reason: str
    errors: list[FieldError] = Field(default_factory=list)
    event_id: str | None = None
    source_topic: str
    source_partition: int
    source_offset: int
    record_timestamp_ms: int | None = None
    original_b64: str


FeedbackOutcome = Literal[
    "delivered", "opened", "clicked", "converted", "failed", "unsubscribed", "ignored"
]


class Feedback(BaseModel):
    """What happened to an action, sent back by marketing automation
    (topic ``journeyflow.feedback``, keyed by ``customer_id``)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    schema_version: Literal[1] = 1
    feedback_id: Annotated[str, Field(min_length=1)]
    action_id: Annotated[str, Field(min_length=1)]
    customer_id: Annotated[str, Field(min_length=1)]
    outcome: FeedbackOutcome
    occurred_at: AwareDatetime
    properties: dict[str, Any] = Field(default_factory=dict)
