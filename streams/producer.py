"""The Python producer helper for developers publishing touchpoints.

Events are validated against contract v1 before they leave the process, so
a bad event is an error in the producer's hands, not a dead letter later.
The Kafka key is the event's customer id (PII hashed), so one customer's
events keep their order.

    async with TouchpointProducer(settings) as producer:
        await producer.send({"event_id": ..., "event_type": "store.check_in", ...})
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from schemas.codec import InvalidEvent, decode_json, validate_touchpoint
from streams.config import ingest_policy
from streams.core.identity import customer_id_for, normalise_all
from streams.core.pii import InvalidIdentifier
from streams.settings import Settings


@dataclass
class Rejection:
    line: int
    event_id: str | None
    reason_code: str
    message: str


@dataclass
class PublishSummary:
    accepted: int = 0
    rejected: list[Rejection] = field(default_factory=list)


def prepare(obj: Any, settings: Settings) -> tuple[bytes, bytes]:
    """Validate one event; return ``(key, value)`` bytes or raise InvalidEvent."""
    event = validate_touchpoint(obj)
    try:
        identities = normalise_all(event.identities, ingest_policy(settings).pii_key)
    except InvalidIdentifier as exc:
        raise InvalidEvent("invalid_identifier", str(exc), event_id=event.event_id) from None
    return customer_id_for(identities).encode(), orjson.dumps(obj)


class TouchpointProducer:
    """Validating aiokafka producer for ``journeyflow.touchpoints``."""

    def __init__(self, settings: Settings, *, validate: bool = True) -> None:
        self.settings = settings
        self.validate = validate
        self.topic = settings.topic("touchpoints")
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap, acks="all", linger_ms=5
        )

    async def __aenter__(self) -> TouchpointProducer:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def send(self, event: Any) -> None:
        """Validate and send one event (a dict); waits for the broker's ack."""
        key, value = prepare(event, self.settings)
        await self._producer.send_and_wait(self.topic, value, key=key)

    async def send_raw(self, value: bytes, key: bytes | None = None) -> None:
        """Send bytes unchecked (tests, replays of dead letters)."""
        await self._producer.send_and_wait(self.topic, value, key=key)

    async def publish_lines(
        self, lines: Iterable[bytes], headers: list[tuple[str, bytes]] | None = None
    ) -> PublishSummary:
        """Publish NDJSON lines; invalid lines are reported, not sent (unless
        validate=False). ``headers`` go on every record (``journeyflow import``
        marks history with one)."""
        summary = PublishSummary()
        pending = []
        for number, line in enumerate(lines, start=1):
            line = line.strip()
            if not line:
                continue
            if not self.validate:
                pending.append(await self._producer.send(self.topic, line, headers=headers))
                summary.accepted += 1
                continue
            try:
                key, value = prepare(decode_json(line), self.settings)
            except InvalidEvent as exc:
                summary.rejected.append(Rejection(number, exc.event_id, exc.code, exc.message))
                continue
            pending.append(await self._producer.send(self.topic, value, key=key, headers=headers))
            summary.accepted += 1
        for future in pending:
            await future
        return summary
