"""The Faust shell: topics, the journey table, agents and web views.

Agents wire, they do not decide: decode, call the core, write the table,
send outputs, count. Every business rule lives in ``streams.core``.

Flow: ``touchpoints`` --[admit_touchpoints]--> ``<app>-touchpoints-by-customer``
(the internal topic: events and One-ID messages keyed by identifier,
co-partitioned with the ``aliases`` and ``journeys`` tables)
--[update_journeys]--> tables + ``actions`` / ``alerts`` / ``live-triggers`` /
``merges``, and further One-ID messages on the internal topic (the protocol:
``streams.core.oneid``). Bad input goes to ``dlq`` at the first step.
"""

from __future__ import annotations

import hmac
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import faust
import orjson
from faust.types import TP
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry, generate_latest

from schemas.codec import InvalidEvent, decode_feedback, encode, validate_touchpoint
from schemas.outputs import Action, Alert, DeadLetter, LiveTrigger, Merge
from streams.config import ingest_policy, oneid_config
from streams.core.errors import CoreError
from streams.core.identity import customer_id_for, normalise, normalise_all, parse_typed
from streams.core.ingest import RecordMeta, admit, dead_letter
from streams.core.oneid import (
    FeedbackMsg,
    Message,
    decode_message,
    encode_message,
    handle,
    message_event_ms,
    root_of,
    route_event,
)
from streams.core.pii import InvalidIdentifier
from streams.core.profile import profile_view
from streams.core.rules import Output
from streams.metrics import Metrics
from streams.runtime import read_records, write_records
from streams.settings import Settings
from streams.timer_index import TimerIndex
from streams.topics import Topics, topics_for
from streams.transport import Transport, applied_key
from streams.watermark import InputWatermark

log = logging.getLogger("journeyflow")

#: Key of the idle-tick records on the re-keyed topic (never a customer id).
TICK_KEY = b"\x00tick"
#: Header ``journeyflow import`` puts on history: update journeys, decide nothing.
IMPORT_HEADER = "jf-import"
#: Largest number of alias hops a profile request follows (roots only ever
#: point at smaller keys; a chain this long means merges are still in flight).
MAX_PROFILE_HOPS = 8

#: Largest POST /v1/events body and batch.
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_BATCH = 10_000
#: Prometheus text format (aiohttp wants the charset outside content_type).
PROMETHEUS_TEXT = "text/plain; version=0.0.4"


@dataclass
class Journeyflow:
    """The running application: the Faust app plus what tests and the CLI need."""

    app: faust.App
    settings: Settings
    topics: Topics
    metrics: Metrics
    journeys: Any  # faust Table
    aliases: Any  # faust Table


def _json(view: View, body: Any, status: int = 200) -> Response:
    return view.bytes(orjson.dumps(body), content_type="application/json", status=status)


def create_app(settings: Settings, registry: CollectorRegistry | None = None) -> Journeyflow:
    """Build the Faust app for these settings (no I/O until the worker starts)."""
    oneid = oneid_config(settings)
    policy = ingest_policy(settings)
    metrics = Metrics(registry or CollectorRegistry())
    specs = topics_for(settings)
    datadir = settings.data_dir / f"{settings.app_id}-worker-{settings.web_port}"
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{host}" for host in settings.bootstrap.split(",")],
        store="rocksdb://" if settings.store == "rocksdb" else "memory://",
        datadir=str(datadir),
        autodiscover=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_port=settings.web_port,
        web_bind=settings.web_bind,
        web_host=settings.web_host,
        web_enabled=True,
        table_standby_replicas=0,
        broker_commit_interval=1.0,
        processing_guarantee=settings.processing_guarantee,
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_seconds / 3),
    )
    # Faust's consumer with the rebalance guards (streams.transport); where
    # each re-keyed partition's applied records end is set once tables exist.
    transport = Transport(app.conf.broker_consumer, app)
    app.transport = transport

    def topic(name: str, **kwargs: Any) -> faust.TopicT:
        return app.topic(
            name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.partitions,
            **kwargs,
        )

    touchpoints = topic(specs.touchpoints.name)
    feedback_in = topic(specs.feedback.name)
    keyed = topic(specs.keyed.name)
    dlq = topic(specs.dlq.name)
    out_topics = {
        "action": topic(specs.actions.name),
        "alert": topic(specs.alerts.name),
        "live_trigger": topic(specs.live_triggers.name),
    }
    merges_topic = topic(specs.merges.name)
    table_options: dict[str, Any] = {}
    if settings.store == "rocksdb":
        table_options = {
            "driver": "rocksdict",
            "block_cache_size": settings.rocksdb_block_cache_mb * 1024 * 1024,
        }

    def table(name: str) -> Any:
        """A bytes -> bytes table, co-partitioned with the re-keyed topic."""
        return app.Table(
            name,
            default=None,
            key_type=bytes,
            value_type=bytes,
            partitions=settings.partitions,
            options=dict(table_options),  # Faust pops keys from it: one copy per table
        )

    journeys = table("journeys")
    # Per-partition event-time clocks and the due-time index (streams.timer_index).
    timers = table("timers")
    # One-ID: identifier -> the customer it belongs to (streams.core.oneid).
    aliases = table("aliases")

    def applied_position(tp: TP) -> int | None:
        if tp.topic != keyed.get_topic_name():
            return None
        raw = timers.get(applied_key(tp.partition))
        return int(raw) if raw else None

    transport.applied_position = applied_position

    async def send_dead_letter(letter: DeadLetter) -> None:
        key = letter.event_id.encode() if letter.event_id else None
        await dlq.send(key=key, value=encode(letter))
        metrics.events.labels("dead_lettered").inc()
        metrics.dead_letters.labels(letter.reason_code).inc()

    async def emit(
        outputs: tuple[Output, ...],
        merges: tuple[Merge, ...] = (),
        sends: tuple[tuple[str, Message], ...] = (),
    ) -> None:
        """Send outputs, merges and One-ID messages and wait for the broker's
        acks. Callers write state only after this returns, so a crash can
        repeat an output (same id) or a message (handlers tolerate that) but
        never lose one."""
        if not outputs and not merges and not sends:
            return
        now = datetime.now(UTC)
        acks = []
        for target, msg in sends:
            acks.append(await keyed.send(key=target.encode(), value=encode_message(msg)))
            metrics.identity_messages.labels(msg.kind).inc()
        for merge in merges:
            stamped_merge = merge.model_copy(update={"emitted_at": now})
            acks.append(
                await merges_topic.send(key=merge.survivor.encode(), value=encode(stamped_merge))
            )
            metrics.merges.inc()
        for output in outputs:
            stamped = output.model_copy(update={"emitted_at": now})
            if isinstance(stamped, Action):
                key = stamped.customer_id
            elif isinstance(stamped, Alert):
                key = stamped.routing_key
            else:
                assert isinstance(stamped, LiveTrigger)
                key = stamped.live_room_id
            topic_ = out_topics[stamped.kind]
            acks.append(await topic_.send(key=key.encode(), value=encode(stamped)))
            metrics.outputs.labels(stamped.kind, stamped.rule_id).inc()
        for ack in acks:
            await ack

    index = TimerIndex(timers, journeys, settings.timer_resolution_seconds * 1000)

    async def move_clock(partition: int, to_ms: int, *, start: bool = True) -> None:
        clock = await index.advance(partition, to_ms, emit, start=start)
        if clock is not None:
            metrics.partition_clock.labels(str(partition)).set(clock.clock_ms / 1000)

    @app.agent(touchpoints, name="admit_touchpoints")
    async def admit_touchpoints(stream: faust.StreamT) -> None:
        """Validate, hash PII, re-key by customer; bad input to the DLQ."""
        async for event in stream.events():
            msg = event.message
            meta = RecordMeta(msg.topic, msg.partition, msg.offset, int(msg.timestamp * 1000))
            raw = event.value if event.value is not None else b""
            result = admit(raw, meta, policy)
            if isinstance(result, DeadLetter):
                await send_dead_letter(result)
            else:
                quiet = header_value(msg.headers, IMPORT_HEADER) == b"1"
                target, route = route_event(result, quiet=quiet)
                await keyed.send(key=target.encode(), value=encode_message(route))

    @app.agent(feedback_in, name="admit_feedback")
    async def admit_feedback(stream: faust.StreamT) -> None:
        """Validate action outcomes from marketing automation and send each to
        the customer it names (One-ID forwards it if that customer was merged)."""
        async for event in stream.events():
            msg = event.message
            meta = RecordMeta(msg.topic, msg.partition, msg.offset, int(msg.timestamp * 1000))
            raw = event.value if event.value is not None else b""
            try:
                fb = decode_feedback(raw)
                kind, value = parse_typed(fb.customer_id)
                key = f"{kind}:{normalise(kind, value, policy.pii_key)}"
            except InvalidEvent as exc:
                await send_dead_letter(
                    dead_letter(raw, meta, exc.code, exc.message, exc.errors, exc.event_id)
                )
                continue
            except CoreError as exc:  # includes InvalidIdentifier
                await send_dead_letter(dead_letter(raw, meta, "invalid_identifier", str(exc)))
                continue
            await keyed.send(key=key.encode(), value=encode_message(FeedbackMsg(fb)))

    async def apply_keyed(event: faust.EventT) -> None:
        """Handle one One-ID message (an event looking for its customer, a
        link, a merge step) against its key's alias and journey; emit what the
        core decided. Tick records (from the leader) move the partition's
        clock instead."""
        msg = event.message
        if event.key == TICK_KEY:
            mark = int(orjson.loads(event.value)["watermark_ms"])
            await move_clock(msg.partition, mark, start=False)
            return
        started = time.perf_counter()
        try:
            key = event.key.decode()
            message = decode_message(event.value)
        except (InvalidEvent, AttributeError, KeyError, TypeError, ValueError) as exc:
            meta = RecordMeta(msg.topic, msg.partition, msg.offset, int(msg.timestamp * 1000))
            await send_dead_letter(
                dead_letter(event.value or b"", meta, "schema_violation", f"internal: {exc}")
            )
            return
        alias, journey = read_records(key, aliases, journeys)
        position = f"{msg.partition}:{msg.offset}"
        clock = index.clock(msg.partition)
        clock_ms = None if clock is None else clock.clock_ms
        fx = handle(key, message, alias, journey, oneid, position, clock_ms)
        for letter in fx.dead_letters:
            await send_dead_letter(letter)
        await emit(tuple(fx.outputs), tuple(fx.merges), tuple(fx.sends))
        if fx.late:
            metrics.late_events.inc()
        if fx.feedback is not None:
            metrics.feedback.labels(fx.feedback).inc()
        event_ms = message_event_ms(message)
        if fx.scheduled:
            index.add(msg.partition, key, tuple(fx.scheduled), event_ms or min(fx.scheduled))
        write_records(key, fx, aliases, journeys)
        for reason in fx.refusals:
            metrics.identity_refusals.labels(reason).inc()
        if fx.outcome is not None:
            metrics.events.labels(fx.outcome).inc()
            metrics.step_seconds.observe(time.perf_counter() - started)
            metrics.pipeline_seconds.observe(max(0.0, time.time() - msg.timestamp))
            if event_ms is not None:
                await move_clock(msg.partition, event_ms)

    @app.agent(keyed, name="update_journeys")
    async def update_journeys(stream: faust.StreamT) -> None:
        """Apply each record, then note where the partition's applied records
        end (streams.transport rewinds to it if a rebalance committed past)."""
        async for event in stream.events():
            await apply_keyed(event)
            msg = event.message
            timers[applied_key(msg.partition)] = b"%d" % (msg.offset + 1)

    if settings.tick_interval_seconds > 0:
        watermark = InputWatermark(
            settings.bootstrap,
            settings.app_id,
            specs.touchpoints.name,
            settings.idle_advance_delay_seconds * 1000,
        )

        @app.on_before_shutdown.connect
        async def stop_watermark(sender: faust.App, **kwargs: Any) -> None:
            await watermark.stop()

        @app.timer(interval=settings.tick_interval_seconds, on_leader=True)
        async def send_ticks() -> None:
            """Carry the input low watermark to every partition (see streams.watermark)."""
            try:
                mark = await watermark.read(int(time.time() * 1000))
            except Exception as exc:  # the broker is briefly away: try at the next tick
                log.warning("could not read the input watermark: %s", exc)
                await watermark.stop()
                return
            if mark is None:
                return
            value = orjson.dumps({"watermark_ms": mark})
            for partition in range(settings.partitions):
                await keyed.send(key=TICK_KEY, value=value, partition=partition)

    @app.timer(interval=5.0)
    async def refresh_gauges() -> None:
        """Consumer lag per assigned partition, and readiness."""
        monitor = app.monitor
        ends = getattr(monitor, "tp_end_offsets", None) or {}
        committed = getattr(monitor, "tp_committed_offsets", None) or {}
        for tp in app.consumer.assignment() if app.consumer else ():
            end = ends.get(tp)
            if end is None:
                continue
            done = committed.get(tp) or 0
            metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, end - done))
        metrics.ready.set(1 if is_ready() else 0)

    def is_ready() -> bool:
        recovery = app.tables.recovery
        return (
            not app.rebalancing
            and not recovery.in_recovery
            and recovery.completed.is_set()
            and bool(app.consumer and app.consumer.assignment() is not None)
        )

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
            body = await request.read()
            if len(body) > MAX_BODY_BYTES:
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
            pending = [await touchpoints.send(key=k, value=v) for k, v in accepted]
            for future in pending:
                await future  # acknowledged by the broker before we answer
            metrics.http_events.labels("accepted").inc(len(accepted))
            metrics.http_events.labels("rejected").inc(len(rejected))
            status = 422 if items and not accepted else 202
            return _json(self, {"accepted": len(accepted), "rejected": rejected}, status)

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
            if not hops_given.isdigit():
                return _json(self, {"error": "hops must be a small whole number"}, 400)
            hops = int(hops_given)
            while hops < MAX_PROFILE_HOPS:
                try:
                    owner = app.router.key_store(aliases.name, key.encode())
                except KeyError:
                    return _json(self, {"error": "no worker owns this key yet, retry"}, 503)
                if not same_node(owner):
                    return await pass_on(self, request, owner, key, hops + 1)
                alias, journey = read_records(key, aliases, journeys)
                root = root_of(key, alias)
                if root == key:
                    if journey is None:
                        return _json(
                            self, {"error": f"no journey for {kind}:…", "customer": None}, 404
                        )
                    return _json(self, profile_view(journey, oneid.core.scoring))
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
        return sorted(tp.partition for tp in actives if tp.topic == specs.keyed.name)

    @app.page("/readyz")
    class ReadyView(View):
        """Ready, and which journey partitions this worker owns."""

        async def get(self, request: Request) -> Response:
            ready = is_ready()
            body = {"ready": ready, "partitions": owned_partitions()}
            return _json(self, body, 200 if ready else 503)

    return Journeyflow(
        app=app,
        settings=settings,
        topics=specs,
        metrics=metrics,
        journeys=journeys,
        aliases=aliases,
    )


def header_value(headers: Any, name: str) -> bytes | None:
    """One header of a Kafka record (Faust gives a mapping or a list of pairs)."""
    items = headers.items() if isinstance(headers, dict) else (headers or ())
    for key, value in items:
        if key == name:
            return value if isinstance(value, bytes) else str(value).encode()
    return None


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
