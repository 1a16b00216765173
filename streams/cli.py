"""The ``journeyflow`` command.

Every command reads ``JOURNEYFLOW_*`` variables (see the README); options
override them. Infrastructure and configuration faults end the command with
one line on stderr and exit status 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import click

from streams import collector
from streams.errors import JourneyflowError
from streams.settings import DEV_PII_KEY, Settings, load_settings

F = TypeVar("F", bound=Callable[..., Any])


def fails_cleanly(fn: F) -> F:
    """Turn a JourneyflowError into one line on stderr and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except JourneyflowError as exc:
            click.echo(f"journeyflow: {exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


@click.group()
@click.version_option(package_name="journeyflow")
def main() -> None:
    """journeyflow: real-time customer journeys from Kafka touchpoints."""
    # aiokafka logs each retry it recovers from (e.g. a leader election just
    # after topics are created); the CLI reports real failures itself. The
    # worker configures its own logging through Faust.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


# --------------------------------------------------------------------- worker


@main.command()
@click.option("--web-port", type=int, help="HTTP port (default 6066, JOURNEYFLOW_WEB_PORT).")
@click.option("--data-dir", type=click.Path(path_type=Path), help="Local state folder.")
@click.option("--store", type=click.Choice(["rocksdb", "memory"]), help="Table store.")
@fails_cleanly
def worker(web_port: int | None, data_dir: Path | None, store: str | None) -> None:
    """Run a stream worker (join the consumer group, serve HTTP)."""
    settings = load_settings(web_port=web_port, data_dir=data_dir, store=store)
    run_worker(settings)


def run_worker(settings: Settings) -> None:
    from faust import Worker

    from streams.admin import check_broker, ensure_topics
    from streams.app import create_app
    from streams.logs import logging_config

    asyncio.run(check_broker(settings.bootstrap))
    created = asyncio.run(ensure_topics(settings))
    if created:
        click.echo(f"created topics: {', '.join(created)}", err=True)
    if settings.pii_key.get_secret_value() == DEV_PII_KEY:
        click.echo(
            "journeyflow: warning: JOURNEYFLOW_PII_KEY is the development key; "
            "set a secret one in production",
            err=True,
        )
    jf = create_app(settings)
    collector.tune(settings.gc_threshold)
    Worker(
        jf.app,
        loglevel=settings.log_level,
        logging_config=logging_config(settings.log_level, settings.log_format),
        quiet=True,
    ).execute_from_commandline()


# ---------------------------------------------------------------------- kafka


@main.group()
def kafka() -> None:
    """Run a local single-node Apache Kafka (KRaft) for development and tests."""


def _kafka_dir(data_dir: Path | None) -> Path:
    return data_dir if data_dir else load_settings().data_dir / "kafka"


@kafka.command("start")
@click.option("--port", type=int, default=9092, show_default=True)
@click.option("--data-dir", type=click.Path(path_type=Path), help="Default .journeyflow/kafka.")
@fails_cleanly
def kafka_start(port: int, data_dir: Path | None) -> None:
    """Start the broker (fetching its jars with Maven on first use); print its address."""
    from streams import broker

    click.echo(broker.start(port=port, data_dir=_kafka_dir(data_dir)))


@kafka.command("stop")
@click.option("--data-dir", type=click.Path(path_type=Path))
@fails_cleanly
def kafka_stop(data_dir: Path | None) -> None:
    """Stop the broker started from this data folder."""
    from streams import broker

    stopped = broker.stop(data_dir=_kafka_dir(data_dir))
    click.echo("stopped" if stopped else "not running")


@kafka.command("status")
@click.option("--data-dir", type=click.Path(path_type=Path))
@fails_cleanly
def kafka_status(data_dir: Path | None) -> None:
    """Say whether the broker is running, and where."""
    from streams import broker

    st = broker.status(data_dir=_kafka_dir(data_dir))
    if st.running:
        click.echo(f"running pid={st.pid} bootstrap={st.bootstrap}")
    else:
        click.echo("not running")
        sys.exit(3)


# -------------------------------------------------------------------- publish


@main.command()
@click.argument("source", type=click.File("rb"))
@click.option("--no-validate", is_flag=True, help="Send lines as they are (bad ones dead-letter).")
@fails_cleanly
def publish(source: Any, no_validate: bool) -> None:
    """Publish NDJSON touchpoints from FILE (or - for stdin) to the touchpoints topic."""
    from streams.admin import check_broker
    from streams.producer import TouchpointProducer

    settings = load_settings()

    async def go() -> Any:
        await check_broker(settings.bootstrap)
        async with TouchpointProducer(settings, validate=not no_validate) as producer:
            return await producer.publish_lines(source)

    _report(asyncio.run(go()), "accepted")


def _report(summary: Any, verb: str) -> None:
    """Rejected lines (the first 50) on stderr, the totals, and the exit status."""
    for r in summary.rejected[:50]:
        click.echo(f"line {r.line}: rejected ({r.reason_code}) {r.message}", err=True)
    if len(summary.rejected) > 50:
        click.echo(f"... and {len(summary.rejected) - 50} more rejected lines", err=True)
    click.echo(f"{verb} {summary.accepted}, rejected {len(summary.rejected)}")
    sys.exit(1 if summary.rejected and not summary.accepted else 0)


@main.command("import")
@click.argument("source", type=click.File("rb"))
@fails_cleanly
def import_history(source: Any) -> None:
    """Load past events from FILE (NDJSON, or - for stdin) without triggering anything.

    For a brand's launch: the events update journeys, identities, stages and
    scores as usual, but decide nothing (no actions, alerts, live triggers,
    reminders) and are never dead-lettered as too late. Future timestamps
    are still refused. Send them oldest first.
    """
    from streams.admin import check_broker
    from streams.batch import IMPORT_HEADER
    from streams.producer import TouchpointProducer

    settings = load_settings()

    async def go() -> Any:
        await check_broker(settings.bootstrap)
        async with TouchpointProducer(settings) as producer:
            return await producer.publish_lines(source, headers=[(IMPORT_HEADER, b"1")])

    _report(asyncio.run(go()), "imported")


# ------------------------------------------------------------------- simulate


def _simulation(
    seed: int, customers: int, rate: float, dirty: float, settings: Settings | None = None
) -> Any:
    """The simulated world; with ``settings``, it answers actions addressed by
    phone hash too (it hashes with the deployment's key)."""
    from streams.config import ingest_policy
    from streams.simulate import Simulation, SimulationConfig

    config = SimulationConfig(
        seed=seed,
        customers=customers,
        start=datetime.now(UTC),
        events_per_second=rate,
        dirty_share=dirty,
    )
    return Simulation(config, None if settings is None else ingest_policy(settings).pii_key)


def _records(seed: int, customers: int, rate: float, dirty: float) -> Iterator[Any]:
    return _simulation(seed, customers, rate, dirty).records()  # type: ignore[no-any-return]


@main.command()
@click.option("--rate", type=float, default=50.0, show_default=True, help="Events per second.")
@click.option("--count", type=int, default=1000, show_default=True, help="0 = until Ctrl-C.")
@click.option("--customers", type=int, default=2000, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--dirty-share", type=float, default=0.03, show_default=True)
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    help="Write NDJSON to this file (- for stdout) instead of Kafka; no pacing.",
)
@fails_cleanly
def simulate(
    rate: float, count: int, customers: int, seed: int, dirty_share: float, output: Path | None
) -> None:
    """Generate seeded, realistic multi-channel traffic (with some dirty input)."""
    records = _records(seed, customers, rate, dirty_share)
    if count:
        records = itertools.islice(records, count)
    if output is not None:
        out = sys.stdout.buffer if str(output) == "-" else output.open("wb")
        n = 0
        for rec in records:
            out.write(rec.value.replace(b"\n", b" ") + b"\n")
            n += 1
        out.flush()
        if out is not sys.stdout.buffer:
            out.close()
            click.echo(f"wrote {n} events to {output}", err=True)
        return
    settings = load_settings()
    sent = asyncio.run(produce_paced(settings, records, rate, progress=True))
    click.echo(f"sent {sent} events to {settings.topic('touchpoints')}")


async def produce_paced(
    settings: Settings, records: Any, rate: float, progress: bool = False
) -> int:
    """Send simulated records at ``rate`` per second of wall time (touchpoints,
    and feedback answering actions when the simulation's loop is closed)."""
    from aiokafka import AIOKafkaProducer

    from streams.admin import check_broker

    await check_broker(settings.bootstrap)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, linger_ms=5)
    await producer.start()
    topics = {name: settings.topic(name) for name in ("touchpoints", "feedback")}
    sent = 0
    started = time.monotonic()
    try:
        for rec in records:
            await producer.send(topics[rec.topic], rec.value, key=rec.key)
            sent += 1
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
            if progress and sent % 1000 == 0:
                click.echo(f"sent {sent} events", err=True)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


# --------------------------------------------------------------------- replay


@main.command()
@click.argument("source", type=click.File("rb"))
@click.option(
    "--output",
    type=click.File("wb"),
    default="-",
    show_default=True,
    help="NDJSON of outputs, dead letters and final journeys.",
)
@click.option(
    "--until",
    help="Move every event-time clock to this RFC 3339 time at the end, so what "
    "is due by then fires (default: the latest event time in the file).",
)
@fails_cleanly
def replay(source: Any, output: Any, until: str | None) -> None:
    """Run the production logic over an NDJSON file, in process (no Kafka)."""
    from streams.replay import replay as run_replay

    until_ms = None
    if until is not None:
        try:
            moment = datetime.fromisoformat(until)
        except ValueError:
            raise JourneyflowError(f"--until: not an RFC 3339 time: {until!r}") from None
        if moment.tzinfo is None:
            raise JourneyflowError("--until needs an offset, e.g. 2026-11-23T20:00:00+08:00")
        until_ms = int(moment.timestamp() * 1000)
    settings = load_settings()
    collector.tune(settings.gc_threshold)
    result = run_replay(source, settings, until_ms)
    for record in result.records():
        output.write(json.dumps(record, ensure_ascii=False).encode() + b"\n")
    output.flush()
    counts = ", ".join(f"{k} {v}" for k, v in result.counts.items())
    click.echo(
        f"{counts}; outputs {len(result.outputs)}, journeys {len(result.journeys)}", err=True
    )


# -------------------------------------------------------------------- profile


@main.command()
@click.argument("identifier")
@click.option("--url", help="Worker URL (default http://127.0.0.1:<JOURNEYFLOW_WEB_PORT>).")
@fails_cleanly
def profile(identifier: str, url: str | None) -> None:
    """Show the journey of the customer behind TYPE:VALUE (e.g. phone:13800138000)."""
    from streams.core.errors import CoreError
    from streams.core.identity import parse_typed

    settings = load_settings()
    try:
        parse_typed(identifier)
    except CoreError as exc:
        raise JourneyflowError(str(exc)) from None
    base = url or f"http://127.0.0.1:{settings.web_port}"
    request = urllib.request.Request(
        f"{base}/v1/customers/{urllib.request.quote(identifier, safe=':')}"
    )
    if settings.api_key:
        request.add_header("X-API-Key", settings.api_key.get_secret_value())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise JourneyflowError(f"no journey for {identifier}") from None
        raise JourneyflowError(f"worker answered {exc.code}: {exc.read()[:200]!r}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise JourneyflowError(f"cannot reach the worker at {base}: {exc}") from None
    click.echo(json.dumps(body, indent=2, ensure_ascii=False))


@main.command()
@click.argument("identifier")
@click.option("--reason", default="data subject request", show_default=True)
@fails_cleanly
def forget(identifier: str, reason: str) -> None:
    """Erase the person behind TYPE:VALUE (PIPL / GDPR): publish privacy.erase.

    The worker drops the customer's journey and every identifier's link to it
    on every partition (tombstones on the compacted changelogs); later events
    for any of those identifiers start a new, unlinked journey. See the
    README's "Personal data" for what remains and for how long.
    """
    from streams.admin import check_broker
    from streams.core.errors import CoreError
    from streams.core.identity import parse_typed
    from streams.producer import TouchpointProducer

    try:
        kind, value = parse_typed(identifier)
    except CoreError as exc:
        raise JourneyflowError(str(exc)) from None
    settings = load_settings()
    event = {
        "event_id": f"forget-{uuid.uuid4()}",
        "event_type": "privacy.erase",
        "channel": "mini_program",
        "occurred_at": datetime.now(UTC).isoformat(),
        "identities": {kind: value},
        "properties": {"reason": reason},
    }

    async def go() -> None:
        await check_broker(settings.bootstrap)
        async with TouchpointProducer(settings) as producer:
            await producer.send(event)

    asyncio.run(go())
    click.echo(f"erasure requested ({event['event_id']}); the worker applies it in seconds")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per model.")
@fails_cleanly
def models(as_json: bool) -> None:
    """Show the propensity models the workers score with: version, examples
    learned, positives, and quality measured the honest way (the score at
    decision time against the label that came later)."""
    from streams.admin import check_broker
    from streams.learning import describe_models, header_facts, read_snapshots
    from streams.topics import topics_for

    settings = load_settings()

    async def go() -> dict[str, bytes]:
        await check_broker(settings.bootstrap)
        return await read_snapshots(settings.bootstrap, topics_for(settings).models.name)

    try:
        snapshots = asyncio.run(go())
    except Exception as exc:
        if isinstance(exc, JourneyflowError):
            raise
        raise JourneyflowError(f"cannot read the model snapshots: {exc}") from None
    facts = [header_facts(snapshots[t]) for t in sorted(snapshots)]
    if not facts:
        click.echo(
            "no model snapshot yet: the models are untrained (decisions are recorded and "
            "scored 0.5 until the trainer publishes one)"
        )
        return
    if as_json:
        for fact in facts:
            click.echo(json.dumps(fact, ensure_ascii=False))
        return
    for line in describe_models(facts, time.time()):
        click.echo(line)


@main.command()
@click.option(
    "--catalog",
    "catalog_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Catalog JSON with the policies (default: JOURNEYFLOW_CATALOG_FILE, else shipped).",
)
@click.option(
    "--timezone", "zone", default="Asia/Shanghai", show_default=True, help="Customers' time zone."
)
@fails_cleanly
def audit(catalog_path: Path | None, zone: str) -> None:
    """Check every catalog action published (holdout included) against the
    contact policies with the independent checker (streams/audit.py): caps per
    channel and overall, cooldowns, quiet hours, after a purchase, each against
    what the customer's journey held when it was decided. Prints one JSON
    object; exits 3 when anything broke a policy (1 when it could not check)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from streams.admin import check_broker
    from streams.audit import audit_run, report_json
    from streams.config import _read_json
    from streams.topics import topics_for

    settings = load_settings()
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise JourneyflowError(f"unknown time zone {zone!r}") from exc
    path = catalog_path or settings.catalog_file
    catalog = _read_json(path, "catalog") if path else _read_json("catalog/default.json", "catalog")
    if not isinstance(catalog, dict) or not isinstance(catalog.get("actions"), list):
        raise JourneyflowError(f"catalog: {path or 'shipped'} has no list of actions")
    topics = topics_for(settings)

    async def go() -> Any:
        await check_broker(settings.bootstrap)
        return await audit_run(
            settings.bootstrap,
            catalog,
            actions_topics=(topics.actions.name, topics.holdout.name),
            feedback_topic=topics.feedback.name,
            journeys_changelog=f"{settings.app_id}-journeys-changelog",
            timezone=zone,
            progress=lambda line: click.echo(f"read {line}", err=True),
        )

    try:
        report = asyncio.run(go())
    except Exception as exc:
        if isinstance(exc, JourneyflowError):
            raise
        raise JourneyflowError(f"cannot read the published actions: {exc}") from None
    click.echo(json.dumps(report_json(report), ensure_ascii=False, indent=2))
    if report.violations:
        sys.exit(3)


@main.command()
@click.option("--seed", type=int, default=11, show_default=True)
@click.option("--customers", type=int, default=1000, show_default=True)
@click.option("--days", type=float, default=10.0, show_default=True, help="Days of event time.")
@click.option(
    "--rate",
    type=float,
    default=0.5,
    show_default=True,
    help="Simulated events per second of event time.",
)
@click.option("--holdout-percent", type=float, default=30.0, show_default=True)
@click.option("--output", type=click.Path(path_type=Path), help="Also write the JSON here.")
@fails_cleanly
def evaluate(
    seed: int,
    customers: int,
    days: float,
    rate: float,
    holdout_percent: float,
    output: Path | None,
) -> None:
    """Run the closed loop on the simulator's ground truth, in process (no
    broker), and print one JSON object: model AUC online vs a batch model vs
    the lead score, conversion of treated vs holdout customers with the
    lift's 95 % interval, and contact-policy violations."""
    from streams.evaluate import EvaluateConfig
    from streams.evaluate import evaluate as run

    config = EvaluateConfig(
        seed=seed,
        customers=customers,
        days=days,
        events_per_second=rate,
        holdout_percent=holdout_percent,
    )
    settings = load_settings()
    collector.tune(settings.gc_threshold)
    result = run(config, settings, progress=lambda m: click.echo(m, err=True))
    text = json.dumps(result, ensure_ascii=False)
    if output is not None:
        output.write_text(text + "\n", encoding="utf-8")
    click.echo(text)


# ------------------------------------------------------------------------- up


#: What ``journeyflow up`` sets for its worker (unless the environment sets
#: it) so the models learn while you watch: a decision is labelled by a
#: purchase within 10 minutes of event time instead of 72 hours (churn: 1
#: hour instead of 14 days), and a model is used once it has 100 labelled
#: examples. ``--real-horizons`` keeps the production defaults.
DEMO_LEARNING = {
    "JOURNEYFLOW_CONVERT_HORIZON_HOURS": str(10 / 60),
    "JOURNEYFLOW_CHURN_HORIZON_DAYS": str(1 / 24),
    "JOURNEYFLOW_MODEL_MIN_EXAMPLES": "100",
    "JOURNEYFLOW_SNAPSHOT_EVERY_EXAMPLES": "100",
    "JOURNEYFLOW_DECISION_SPACING_MINUTES": "10",
}
#: What each of them means, as ``up`` says it.
DEMO_MEANS = {
    "JOURNEYFLOW_CONVERT_HORIZON_HOURS": "a purchase within 10 minutes labels a decision",
    "JOURNEYFLOW_CHURN_HORIZON_DAYS": "churn within an hour",
    "JOURNEYFLOW_MODEL_MIN_EXAMPLES": "a model is used after 100 labelled examples",
    "JOURNEYFLOW_SNAPSHOT_EVERY_EXAMPLES": "snapshots every 100",
    "JOURNEYFLOW_DECISION_SPACING_MINUTES": "a customer's decisions 10 minutes apart",
}


def demo_learning_env(environ: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """``environ`` with :data:`DEMO_LEARNING`'s settings where it has none, and
    the names of those it added."""
    added = [name for name in DEMO_LEARNING if name not in environ]
    return {**environ, **{name: DEMO_LEARNING[name] for name in added}}, added


@main.command()
@click.option("--rate", type=float, default=20.0, show_default=True, help="Simulated events/s.")
@click.option("--kafka-port", type=int, default=9092, show_default=True)
@click.option("--web-port", type=int, help="Worker HTTP port (default 6066).")
@click.option(
    "--real-horizons",
    is_flag=True,
    help="Label decisions over the production horizons (72 h, 14 days) instead of "
    "minutes: the models then mature only after days of event time.",
)
@fails_cleanly
def up(rate: float, kafka_port: int, web_port: int | None, real_horizons: bool) -> None:
    """The main job: broker (unless configured), worker, simulated traffic, live output.

    Prints actions, alerts, live triggers and One-ID merges as they happen
    until Ctrl-C, then stops everything it started (also on SIGTERM or
    SIGHUP: a service manager, ``timeout`` or a closed terminal). The models
    learn within minutes (short label horizons, see ``DEMO_LEARNING``) unless
    ``--real-horizons``: watch ``journeyflow models`` in another terminal.
    """
    from streams import broker

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)

    settings = load_settings(web_port=web_port)
    started_broker: Path | None = None
    if settings.kafka_bootstrap is None:
        kafka_dir = settings.data_dir / "kafka"
        click.echo("starting a local Apache Kafka broker ...", err=True)
        bootstrap = broker.start(port=kafka_port, data_dir=kafka_dir)
        started_broker = kafka_dir
        settings = load_settings(web_port=web_port, kafka_bootstrap=bootstrap)
    env = {**os.environ, "JOURNEYFLOW_KAFKA_BOOTSTRAP": settings.bootstrap}
    env["JOURNEYFLOW_WEB_PORT"] = str(settings.web_port)
    demo: list[str] = []
    if not real_horizons:
        env, demo = demo_learning_env(env)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.data_dir / "worker.log"
    worker_proc: subprocess.Popen[bytes] | None = None
    try:
        with log_path.open("ab") as log_file:
            worker_proc = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker"],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        web = f"http://127.0.0.1:{settings.web_port}"
        click.echo(
            f"worker starting (log: {log_path})\n"
            f"  metrics   {web}/metrics\n"
            f"  profile   journeyflow profile live_viewer_id:douyin:<id> --url {web}  "
            f"(or {web}/v1/customers/TYPE:VALUE)\n"
            f"  ingest    POST {web}/v1/events\n"
            f"simulating {rate:g} events/s; actions, alerts, live triggers and merges appear "
            "below. "
            "Ctrl-C stops everything.",
            err=True,
        )
        if demo:
            click.echo(
                "models learn within minutes here: "
                f"{'; '.join(DEMO_MEANS[n] for n in demo)} "
                "(--real-horizons for the production 72 h; each is a JOURNEYFLOW_ setting). "
                "Actions name their model (convert:N) once it is ready; until then the lead "
                "score stands in. Watch: journeyflow models",
                err=True,
            )
        asyncio.run(_watch(settings, rate, worker_proc))
    except (KeyboardInterrupt, BrokenPipeError):  # Ctrl-C, or the reader of a pipe is gone
        pass
    finally:
        # a pipe's reader (``| tee``) dies with Ctrl-C too: say nothing that could
        # fail before everything this command started is stopped
        _say("\nstopping ...")
        try:
            if worker_proc is not None and worker_proc.poll() is None:
                worker_proc.send_signal(signal.SIGTERM)
                try:
                    worker_proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    worker_proc.kill()
        finally:
            if started_broker is not None:
                broker.stop(data_dir=started_broker)
        _say("stopped")


def _interrupt(signum: int, frame: object) -> None:
    """Stop ``up`` as Ctrl-C does, so it stops what it started."""
    raise KeyboardInterrupt


def _say(message: str) -> None:
    """A status line on stderr that cannot fail (its reader may be gone)."""
    with contextlib.suppress(OSError, ValueError):
        click.echo(message, err=True)


async def _watch(settings: Settings, rate: float, worker_proc: subprocess.Popen[bytes]) -> None:
    """Feed simulated traffic and print every output as it arrives."""
    from aiokafka import AIOKafkaConsumer

    from streams.admin import ensure_topics

    await ensure_topics(settings)
    consumer = AIOKafkaConsumer(
        settings.topic("actions"),
        settings.topic("holdout"),
        settings.topic("alerts"),
        settings.topic("live-triggers"),
        settings.topic("merges"),
        bootstrap_servers=settings.bootstrap,
        auto_offset_reset="latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    # the loop is closed: the simulated customers answer the actions they get
    simulation = _simulation(int(time.time()), 2000, rate, 0.03, settings)
    actions = settings.topic("actions")
    feeder = asyncio.create_task(produce_paced(settings, simulation.records(), rate))
    try:
        while True:
            if worker_proc.poll() is not None:
                raise JourneyflowError(
                    f"the worker exited with status {worker_proc.returncode}; "
                    f"see {settings.data_dir / 'worker.log'}"
                )
            if feeder.done() and feeder.exception():
                raise JourneyflowError(f"traffic simulator failed: {feeder.exception()}")
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    out = json.loads(record.value)
                    if record.topic == actions:
                        simulation.respond(out)
                    click.echo(describe_output(out))
    finally:
        feeder.cancel()
        await consumer.stop()


def describe_output(out: dict[str, Any]) -> str:
    """One line per output for the terminal, times in China Standard Time.

    >>> describe_output({"kind": "merge", "decided_at": "2026-11-24T01:47:21Z",
    ...     "absorbed": "device_id:d1", "survivor": "member_id:M-1",
    ...     "absorbed_identifiers": ["device_id:d1"]})
    '09:47:21 merge        device_id:d1 -> member_id:M-1 | holds device_id:d1'
    >>> describe_output({"kind": "action", "decided_at": "2026-11-24T12:02:11Z",
    ...     "action": "live_viewer_coupon", "catalog_version": "1", "holdout": False,
    ...     "delivery": {"channel": "live_popup"}, "propensity": 0.4123,
    ...     "model_version": "convert:7", "choice_probability": 0.81,
    ...     "customer_id": "live_viewer_id:douyin:5",
    ...     "reason": "coupon pop-up; convert propensity 0.41 (model v7)"})
    '20:02:11 nba          live_viewer_coupon via live_popup, propensity 0.41 (convert:7), \
chosen with p=0.81 | live_viewer_id:douyin:5 | coupon pop-up; convert propensity 0.41 (model v7)'
    >>> describe_output({"kind": "action", "decided_at": "2026-11-24T12:02:11Z",
    ...     "action": "live_viewer_coupon", "catalog_version": "1", "holdout": False,
    ...     "delivery": {"channel": "live_popup"}, "rule_id": "live_price_question_coupon",
    ...     "customer_id": "live_viewer_id:douyin:5", "reason": "asked about price"})
    '20:02:11 nba          live_viewer_coupon via live_popup, by rule live_price_question_coupon \
| live_viewer_id:douyin:5 | asked about price'
    """
    kind = out.get("kind", "?")
    when = _clock_time(str(out.get("decided_at", "")))
    if kind == "merge":
        absorbed = ", ".join(out.get("absorbed_identifiers", []))
        return f"{when} {kind:<12} {out['absorbed']} -> {out['survivor']} | holds {absorbed}"
    if kind == "action" and out.get("catalog_version"):
        kind = "nba holdout" if out.get("holdout") else "nba"
        channel = (out.get("delivery") or {}).get("channel", "?")
        if out.get("propensity") is None:  # a rule's action, sent as a catalog action
            what = f"{out['action']} via {channel}, by rule {out.get('rule_id')}"
        else:
            what = (
                f"{out['action']} via {channel}, propensity {out['propensity']:.2f} "
                f"({out.get('model_version') or 'lead-score stand-in'}), "
                f"chosen with p={out.get('choice_probability', 0):.2f}"
            )
    elif kind == "action":
        what = f"{out['action']} {out.get('params', {})}"
    elif kind == "alert":
        what = f"{out['alert_type']} ({out['severity']}) -> {out['routing_key']}"
    else:
        what = f"{out.get('trigger_type')} in {out.get('live_room_id')}"
    return f"{when} {kind:<12} {what} | {out['customer_id']} | {out['reason']}"


def _clock_time(stamp: str) -> str:
    """``HH:MM:SS`` of an RFC 3339 time in UTC+8 (outputs carry the zone of
    their cause: a merge's is UTC, an action's the event's own)."""
    try:
        at = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp[11:19]
    return at.astimezone(timezone(timedelta(hours=8))).strftime("%H:%M:%S")


def _register_bench() -> None:
    try:
        from bench.cli import bench
    except ImportError:  # an install without the bench package (not a checkout)
        return
    main.add_command(bench)


_register_bench()

if __name__ == "__main__":
    main()
