"""``journeyflow bench``: throughput, latency, changelog cost and a profile of
the worker, next to a raw aiokafka baseline and an in-process CPU ceiling.

Register with ``main.add_command(bench)``; ``python -m bench`` runs it alone.
"""

from __future__ import annotations

import sys
from asyncio import CancelledError
from pathlib import Path

import click

#: Closed-loop events: enough for the worker's closed loop to last 20 s or more at
#: the ~3,600 events/s it manages on a 2-core machine (``BENCHMARKS.md``).
DEFAULT_EVENTS = 100_000
QUICK_EVENTS = 2000
#: The default closed-loop timeout grows past 600 s by 1 s per this many events (a
#: profiled worker on a shared 2-core machine may manage a few hundred events/s).
EVENTS_PER_TIMEOUT_S = 250
QUICK_DURATION = 5.0
#: Burst events (a flash-sale backlog drained by a fresh worker).
DEFAULT_BURST_EVENTS = 200_000
QUICK_BURST_EVENTS = 5000


def _command_line() -> list[str]:
    argv0 = Path(sys.argv[0])
    head = ["python", "-m", argv0.parent.name] if argv0.name == "__main__.py" else [argv0.name]
    return [*head, *sys.argv[1:]]


def _levels(ctx: click.Context, param: click.Parameter, value: str) -> tuple[float, ...]:
    try:
        levels = tuple(float(x) for x in value.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter("a comma-separated list of numbers, e.g. 0.25,0.5,0.75") from None
    if any(not 0 < x <= 2 for x in levels):
        raise click.BadParameter("each level is a fraction of max throughput in (0, 2]")
    return levels


def _rates(value: str) -> tuple[float, ...]:
    try:
        rates = tuple(float(x) for x in value.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter("a comma-separated list of events/s, e.g. 300,600") from None
    if any(x <= 0 for x in rates):
        raise click.BadParameter("each rate is a positive number of events/s")
    return rates


@click.command("bench")
@click.option(
    "--events",
    type=click.IntRange(100, 1_000_000),
    default=None,
    help="Simulated events for the closed loop  [default: 100000; 2000 with --quick]",
)
@click.option(
    "--bootstrap",
    envvar="JOURNEYFLOW_KAFKA_BOOTSTRAP",
    help="Use this Kafka (default: JOURNEYFLOW_KAFKA_BOOTSTRAP) instead of a private "
    "broker started (and stopped) in a temp dir. Every run uses its own topics.",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Results JSON  [default: bench/results/<UTC timestamp>.json]",
)
@click.option(
    "--quick",
    is_flag=True,
    help="Smoke run: 2000 events, 5 s per open-loop level, a burst of 5000.",
)
@click.option(
    "--levels",
    default="0.25,0.5,0.75",
    show_default=True,
    callback=_levels,
    help="Open-loop rates as fractions of the worker's closed-loop throughput.",
)
@click.option(
    "--rates",
    default="",
    callback=lambda ctx, param, value: _rates(value),
    help="Open-loop rates in events/s instead of --levels (the same rates in every run, so "
    "runs on a machine whose speed varies compare).",
)
@click.option("--seed", type=int, default=7, show_default=True, help="Simulation seed.")
@click.option(
    "--guarantee",
    type=click.Choice(["at_least_once"]),
    default="at_least_once",
    show_default=True,
    help="The worker's JOURNEYFLOW_PROCESSING_GUARANTEE.",
)
@click.option(
    "--duration",
    type=click.FloatRange(1, 300),
    default=None,
    help="Seconds of traffic per open-loop level  [default: 20; 5 with --quick]",
)
@click.option(
    "--set",
    "worker_settings",
    multiple=True,
    metavar="NAME=VALUE",
    help="A worker setting (a JOURNEYFLOW_* name without the prefix, e.g. "
    "fetch_min_bytes=32768), for every worker of the run and the ceiling; repeatable. "
    "The caller's own JOURNEYFLOW_* environment is ignored.",
)
@click.option("--partitions", type=click.IntRange(1, 64), default=8, show_default=True)
@click.option("--customers", type=click.IntRange(1, 1_000_000), default=2000, show_default=True)
@click.option(
    "--profile/--no-profile",
    default=True,
    show_default=True,
    help="An extra closed-loop worker run with py-spy attached (py-spy: the test extra).",
)
@click.option(
    "--broker-limit/--no-broker-limit",
    default=True,
    show_default=True,
    help="Kafka's own producer and consumer perf tools against the broker (needs Java).",
)
@click.option(
    "--burst/--no-burst",
    default=True,
    show_default=True,
    help="A flash-sale peak (Zipf-distributed customers, one hot live room) produced "
    "before a fresh worker starts: time until all is accounted for, peak RSS.",
)
@click.option(
    "--burst-events",
    type=click.IntRange(100, 1_000_000),
    default=None,
    help=f"Events in the burst  [default: {DEFAULT_BURST_EVENTS}; "
    f"{QUICK_BURST_EVENTS} with --quick]",
)
@click.option(
    "--timeout",
    type=click.FloatRange(10, 3600),
    default=None,
    help="Longest wait for one closed loop to finish  [default: 600 s, or 1 s per "
    f"{EVENTS_PER_TIMEOUT_S} events if longer]",
)
def bench(
    events: int | None,
    bootstrap: str | None,
    output: Path | None,
    quick: bool,
    levels: tuple[float, ...],
    rates: tuple[float, ...],
    seed: int,
    guarantee: str,
    duration: float | None,
    worker_settings: tuple[str, ...],
    partitions: int,
    customers: int,
    profile: bool,
    broker_limit: bool,
    burst: bool,
    burst_events: int | None,
    timeout: float | None,
) -> None:
    """Benchmark the worker against a raw aiokafka baseline and a CPU ceiling.

    Progress goes to stderr, a markdown summary to stdout, all numbers to the
    results JSON. Timings are measurements, not pass/fail checks.
    """
    from bench.harness import BenchConfig, BenchError, run_bench
    from bench.report import render
    from streams.errors import JourneyflowError

    events = events or (QUICK_EVENTS if quick else DEFAULT_EVENTS)
    cfg = BenchConfig(
        events=events,
        bootstrap=bootstrap,
        output=output,
        levels=levels,
        rates=rates,
        seed=seed,
        duration=duration or (QUICK_DURATION if quick else 20.0),
        partitions=partitions,
        customers=customers,
        profile=profile,
        broker_limit=broker_limit,
        burst=burst,
        burst_events=burst_events or (QUICK_BURST_EVENTS if quick else DEFAULT_BURST_EVENTS),
        timeout=timeout or max(600.0, events / EVENTS_PER_TIMEOUT_S),
        quick=quick,
        guarantee=guarantee,
        worker_settings=_worker_settings(worker_settings),
        command=_command_line(),
    )
    try:
        results = run_bench(cfg)
    except (BenchError, JourneyflowError) as exc:
        click.echo(f"journeyflow bench: {exc}", err=True)
        sys.exit(1)
    except (KeyboardInterrupt, CancelledError):
        click.echo("journeyflow bench: interrupted; everything it started is stopped", err=True)
        sys.exit(130)
    click.echo(render(results))
    click.echo(f"results: {results['_output']}", err=True)


def _worker_settings(given: tuple[str, ...]) -> dict[str, str]:
    """``--set NAME=VALUE`` pairs, each naming a worker setting."""
    from typing import Annotated

    from pydantic import TypeAdapter, ValidationError

    from streams.settings import Settings

    out: dict[str, str] = {}
    for item in given:
        name, sep, value = item.partition("=")
        name = name.strip().lower().removeprefix("journeyflow_")
        if not sep or name not in Settings.model_fields:
            raise click.BadParameter(
                f"{item!r}: expected NAME=VALUE with NAME a worker setting "
                "(see the README's configuration table)",
                param_hint="--set",
            )
        info = Settings.model_fields[name]
        try:
            kind = Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
            TypeAdapter(kind).validate_strings(value)
        except ValidationError as exc:
            problem = exc.errors(include_url=False)[0]["msg"]
            raise click.BadParameter(f"{item!r}: {problem}", param_hint="--set") from None
        out[name] = value
    return out
