"""The worker's HTTP views: ingest, profiles, metrics, health.

They read the tables through ``streams.tables.FaustTables`` (the partition a
key lives on is Kafka's default partitioner's choice) and decide nothing:
parsing and validation are ``schemas.codec``, profiles ``streams.core``.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

import faust
import orjson
from aiohttp.web_exceptions import HTTPRequestEntityTooLarge
from faust.web import Request, Response, View
from prometheus_client import generate_latest

from schemas.codec import InvalidEvent, validate_touchpoint
from streams.config import core_config, ingest_policy
from streams.core.errors import CoreError
from streams.core.identity import customer_id_for, normalise, normalise_all, parse_typed
from streams.core.journey import decode_decisions, decode_state
from streams.core.oneid import decode_alias, root_of
from streams.core.pii import InvalidIdentifier
from streams.core.profile import profile_view
from streams.metrics import Metrics
from streams.runtime import key_partition
from streams.settings import Settings
from streams.tables import FaustTables
from streams.topics import Topics

#: Largest number of alias hops a profile request follows (roots only ever
#: point at smaller keys; a chain this long means merges are still in flight).
MAX_PROFILE_HOPS = 8
#: Largest POST /v1/events body and batch.
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_BATCH = 10_000
#: Prometheus text format (aiohttp wants the charset outside content_type).
PROMETHEUS_TEXT = "text/plain; version=0.0.4"


def _json(view: View, body: Any, status: int = 200) -> Response:
    return view.bytes(orjson.dumps(body), content_type="application/json", status=status)


def add_views(
    app: faust.App,
    settings: Settings,
    metrics: Metrics,
    tables: FaustTables,
    is_ready: Callable[[], bool],
    topics: Topics,
) -> None:
    policy = ingest_policy(settings)
    scoring = core_config(settings).scoring
    touchpoints = topics.touchpoints.name

    def authorised(request: Request) -> bool:
        if settings.api_key is None:
            return True
        given = request.headers.get("X-API-Key", "")
        return hmac.compare_digest(given, settings.api_key.get_secret_value())

    @app.page("/v1/events")
    class EventsView(View):
        """POST a JSON array or NDJSON of touchpoints; per-event errors come back."""

        async def post(self, request: Request) -> Response:
            if not authorised(request):
                return _json(self, {"error": "missing or wrong X-API-Key"}, 401)
            try:
                body = await request.read()
            except HTTPRequestEntityTooLarge:  # aiohttp's own limit (client_max_size)
                body = None
            if body is None or len(body) > MAX_BODY_BYTES:
                return _json(self, {"error": f"body over {MAX_BODY_BYTES} bytes"}, 413)
            try:
                items = parse_batch(body)
            except ValueError as exc:
                return _json(self, {"error": str(exc)}, 400)
            accepted: list[tuple[bytes, bytes]] = []
            rejected: list[dict[str, Any]] = []
            for index, item in enumerate(items):
                if item is _INVALID_LINE:
                    rejected.append(
                        {
                            "index": index,
                            "event_id": None,
                            "reason_code": "malformed_json",
                            "errors": [{"field": "(root)", "message": "line is not valid JSON"}],
                        }
                    )
                    continue
                try:
                    event = validate_touchpoint(item)
                    key = customer_id_for(normalise_all(event.identities, policy.pii_key))
                except InvalidEvent as exc:
                    rejected.append(
                        {
                            "index": index,
                            "event_id": exc.event_id,
                            "reason_code": exc.code,
                            "errors": [e.model_dump() for e in exc.errors],
                        }
                    )
                    continue
                except InvalidIdentifier as exc:
                    rejected.append(
                        {
                            "index": index,
                            "event_id": event.event_id,
                            "reason_code": "invalid_identifier",
                            "errors": [{"field": "identities", "message": str(exc)}],
                        }
                    )
                    continue
                accepted.append((key.encode(), orjson.dumps(item)))
            send = app.producer.send
            pending = [await send(touchpoints, k, v, None, None, None) for k, v in accepted]
            for future in pending:
                await future  # acknowledged by the broker before we answer
            metrics.http_events.labels("accepted").inc(len(accepted))
            metrics.http_events.labels("rejected").inc(len(rejected))
            status = 422 if items and not accepted else 202
            return _json(self, {"accepted": len(accepted), "rejected": rejected}, status)

    def read(key: str) -> tuple[Any, Any]:
        partition = key_partition(key, settings.partitions)
        raw_alias = tables.read("aliases", partition, key.encode())
        raw_journey = tables.read("journeys", partition, key.encode())
        # the profile shows no recent window: its pages are not read
        journey = decode_state(raw_journey) if raw_journey else None
        raw_decisions = tables.read("decisions", partition, key.encode())
        if journey is not None and raw_decisions:
            journey = decode_decisions(raw_decisions).applied_to(journey)
        return decode_alias(raw_alias) if raw_alias else None, journey

    @app.page("/v1/customers/{identifier}")
    class CustomerView(View):
        """The merged journey of the customer behind ``TYPE:VALUE``.

        The identifier's alias lives on the worker that owns its partition,
        the customer's journey on the one that owns the customer id's: the
        request is passed along (at most ``MAX_PROFILE_HOPS`` times)."""

        async def get(self, request: Request, identifier: str) -> Response:
            if not authorised(request):
                return _json(self, {"error": "missing or wrong X-API-Key"}, 401)
            try:
                kind, value = parse_typed(identifier)
                key = f"{kind}:{normalise(kind, value, policy.pii_key)}"
            except CoreError as exc:
                return _json(self, {"error": str(exc)}, 400)
            hops_given = request.query.get("hops", "0")
            if not hops_given.isdigit() or int(hops_given) > MAX_PROFILE_HOPS:
                return _json(
                    self, {"error": f"hops must be a whole number up to {MAX_PROFILE_HOPS}"}, 400
                )
            hops = int(hops_given)
            while hops < MAX_PROFILE_HOPS:
                try:
                    owner = app.router.key_store("aliases", key.encode())
                except KeyError:
                    return _json(self, {"error": "no worker owns this key yet, retry"}, 503)
                if not same_node(owner):
                    return await pass_on(self, request, owner, key, hops + 1)
                alias, journey = read(key)
                root = root_of(key, alias)
                if root == key:
                    if journey is None:
                        return _json(
                            self, {"error": f"no journey for {kind}:…", "customer": None}, 404
                        )
                    return _json(self, profile_view(journey, scoring))
                key, hops = root, hops + 1
            return _json(self, {"error": "merges in progress for this customer, retry"}, 503)

    def same_node(url: Any) -> bool:
        here = app.conf.canonical_url
        return bool((url.host, url.port) == (here.host, here.port))

    async def pass_on(view: View, request: Request, owner: Any, key: str, hops: int) -> Response:
        url = owner.with_path(f"/v1/customers/{key}").with_query({"hops": str(hops)})
        headers = {"X-API-Key": request.headers.get("X-API-Key", "")}
        async with app.http_client.get(url, headers=headers) as response:
            body = await response.read()
            return view.bytes(body, content_type="application/json", status=response.status)

    @app.page("/metrics")
    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            metrics.ready.set(1 if is_ready() else 0)
            return self.bytes(generate_latest(metrics.registry), content_type=PROMETHEUS_TEXT)

    @app.page("/healthz")
    class HealthView(View):
        async def get(self, request: Request) -> Response:
            return _json(self, {"status": "ok"})

    def owned_partitions() -> list[int]:
        actives = app.assignor.assigned_actives() if app.assignor else set()
        return sorted(tp.partition for tp in actives if tp.topic == topics.keyed.name)

    @app.page("/readyz")
    class ReadyView(View):
        """Ready, and which journey partitions this worker owns."""

        async def get(self, request: Request) -> Response:
            ready = is_ready()
            body = {"ready": ready, "partitions": owned_partitions()}
            return _json(self, body, 200 if ready else 503)


def parse_batch(body: bytes) -> list[Any]:
    """A JSON array, one JSON object, or NDJSON (one object per line).

    Lines that are not JSON come back as ``InvalidJson`` markers so the caller
    reports them per line instead of failing the whole batch.
    """
    text = body.strip()
    if not text:
        raise ValueError("empty body: send a JSON array or NDJSON of touchpoint events")
    if text[:1] == b"[":
        try:
            items = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"body is not a valid JSON array: {exc}") from None
    else:
        items = []
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                items.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                items.append(_INVALID_LINE)
    if len(items) > MAX_BATCH:
        raise ValueError(f"batch of {len(items)} events is over the limit of {MAX_BATCH}")
    return items


class _InvalidLine:
    """Stands for an NDJSON line that was not JSON; validation rejects it."""


_INVALID_LINE = _InvalidLine()
