"""Where the worker's time goes: py-spy samples of the running worker process.

py-spy samples the worker from outside (no code in the worker changes, no
tracing hook slowing every call), ``--nonblocking`` so the worker is never
paused, and ``--gil``: only samples of the thread holding the interpreter
lock are kept, so percentages are shares of the worker's time on the CPU in
Python. Without it, a thread waiting to take the lock back after a C call
that released it (a socket write, a compression) was sampled in that call:
at 450 events/s such waits put 11 % in socket writes and 9 % in zstd that
were not CPU (``BENCHMARKS.md``, fifth session).

The summary has three views of the same samples:

- ``categories``: self time by layer. Each sample is charged to the first
  frame from the leaf up that belongs to a known layer, so time inside a C
  extension (pydantic-core, orjson, rocksdict) lands on its Python caller:
  ``encode_state`` and everything under ``schemas/`` or ``pydantic/`` count
  as codecs, ``faust/stores`` as the RocksDB store, and so on.
- ``stages``: inclusive time of named parts of the pipeline (a sample counts
  for every stage on its stack).
- ``top_cumulative``: the functions on the most stacks (inclusive), like a
  cProfile "cumulative" listing, without the event loop's own root frames.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: (category, predicate on (function, file)), tried leaf first, first match wins.
_CODEC_FUNCS = frozenset(
    {
        "encode_state",
        "decode_state",
        "to_bytes",
        "encode_message",
        "decode_message",
        "message_to_dict",
        "message_from_dict",
        "encode_alias",
        "decode_alias",
    }
)
#: The worker's own shell around the core (streams/*.py, not streams/core/).
_SHELL = ("streams/batch.py", "streams/tables.py", "streams/transport.py", "streams/timer_index.py")
CATEGORIES: tuple[tuple[str, Any], ...] = (
    (
        "codecs: pydantic validate/serialize + orjson",
        lambda fn, f: fn in _CODEC_FUNCS or "pydantic" in f or f.startswith("schemas/"),
    ),
    ("journeyflow core logic (streams/core)", lambda fn, f: "streams/core/" in f),
    ("table store: RocksDB (faust/stores, rocksdict)", lambda fn, f: "faust/stores/" in f),
    ("Faust table (faust/tables)", lambda fn, f: "faust/tables/" in f),
    ("aiokafka (fetch, parse, produce, commit)", lambda fn, f: "aiokafka/" in f),
    (
        "batch protocol shell (streams/batch, tables, transport, timer_index)",
        lambda fn, f: f.endswith(_SHELL),
    ),
    (
        "Faust/mode machinery (app, consumer, producer, timers)",
        lambda fn, f: f.startswith(("faust/", "mode/")) or "/faust/" in f or "/mode/" in f,
    ),
    (
        "metrics (prometheus_client, streams/metrics.py)",
        lambda fn, f: "prometheus_client" in f or f.endswith("streams/metrics.py"),
    ),
    ("app glue (streams/app.py)", lambda fn, f: f.endswith("streams/app.py")),
    (
        "asyncio event loop",
        lambda fn, f: "asyncio/" in f or f.endswith("selectors.py"),
    ),
    ("web server (aiohttp)", lambda fn, f: "aiohttp" in f or "yarl" in f),
)

#: Named stages: (label, predicate); a sample counts once per stage on its stack.
STAGES: tuple[tuple[str, Any], ...] = (
    (
        "BatchEngine.process (the batch protocol: step, send, write)",
        lambda fn, f: fn == "BatchEngine.process",
    ),
    (
        "admission: BatchEngine._touchpoint (admit, route)",
        lambda fn, f: fn == "BatchEngine._touchpoint",
    ),
    ("ingest.admit (decode, validate, hash PII)", lambda fn, f: fn == "admit" and "ingest" in f),
    (
        "internal record: BatchEngine._keyed (One-ID + journey + timers)",
        lambda fn, f: fn == "BatchEngine._keyed",
    ),
    ("oneid.handle (One-ID message)", lambda fn, f: fn == "handle" and "oneid" in f),
    ("engine.step (core decision)", lambda fn, f: fn == "step" and "streams/core/engine" in f),
    ("decode_message / encode_message", lambda fn, f: fn in ("decode_message", "encode_message")),
    ("decode_state", lambda fn, f: fn == "decode_state"),
    ("encode_state", lambda fn, f: fn == "encode_state"),
    ("timers: due-time index and clocks (streams/timer_index)", lambda fn, f: "timer_index" in f),
    ("table reads (FaustTables.read)", lambda fn, f: fn == "FaustTables.read"),
    (
        "sink send: internal records, outputs, DLQ + their acks (KafkaSink.send)",
        lambda fn, f: fn == "KafkaSink.send",
    ),
    (
        "sink write: changelog records + acks, store writes (KafkaSink.write)",
        lambda fn, f: fn == "KafkaSink.write",
    ),
    ("store writes (FaustTables.write)", lambda fn, f: fn == "FaustTables.write"),
    ("RocksDB store (faust/stores)", lambda fn, f: "faust/stores/" in f),
    ("consumer transport (streams/transport.py)", lambda fn, f: "streams/transport" in f),
    ("aiokafka, anywhere", lambda fn, f: "aiokafka/" in f),
    ("aiokafka consumer fetcher", lambda fn, f: "aiokafka/consumer/fetcher" in f),
    ("aiokafka producer", lambda fn, f: "aiokafka/producer/" in f),
    ("consumer commit (Faust + aiokafka)", lambda fn, f: "commit" in fn.lower()),
    (
        "metrics (record_batch, prometheus)",
        lambda fn, f: "prometheus_client" in f or fn == "Metrics.record_batch",
    ),
    ("logging calls", lambda fn, f: f.startswith("logging/")),
)

_ROOT_FILES = ("asyncio/", "runpy", "click/", "<frozen", "threading.py", "streams/cli.py")
_ROOT_FUNCS = frozenset(
    {"<module>", "_run_module_as_main", "_run_code", "execute_from_commandline"}
)


def find_py_spy() -> str | None:
    """The py-spy next to this interpreter (the venv), else on PATH."""
    near = Path(sys.executable).with_name("py-spy")
    if near.exists():
        return str(near)
    return shutil.which("py-spy")


class PySpy:
    """A ``py-spy record`` attached to ``pid`` until :meth:`stop`."""

    def __init__(self, exe: str, pid: int, output: Path, rate: int = 100) -> None:
        self.output = output
        self.log = output.with_suffix(".log")
        cmd = [
            exe,
            "record",
            "--pid",
            str(pid),
            "--format",
            "raw",
            "--rate",
            str(rate),
            "--nonblocking",
            "--gil",
            "--nolineno",
            "--threads",
            "--output",
            str(output),
        ]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGINT (py-spy writes its file), SIGKILL after ``timeout``; True when written."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.output.exists() and self.output.stat().st_size > 0

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-5:])
        return ""


def _parse_frame(frame: str) -> tuple[str, str]:
    """``func (file)`` -> (func, file)."""
    name, sep, rest = frame.rpartition(" (")
    if not sep:
        return frame, ""
    return name, rest.rstrip(")")


def parse_raw(lines: Iterable[str]) -> list[tuple[str, list[tuple[str, str]], int]]:
    """py-spy's raw (collapsed stack) format, ``--threads``:
    ``thread (tid): name;root;...;leaf count`` per line -> (thread, frames, count)."""
    stacks = []
    for line in lines:
        line = line.rstrip("\n")
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        parts = stack.split(";")
        thread = "?"
        if parts and parts[0].startswith("thread ("):
            thread = parts.pop(0).partition("): ")[2] or "?"
        if parts:
            stacks.append((thread, [_parse_frame(f) for f in parts], int(count)))
    return stacks


def _category(frames: list[tuple[str, str]]) -> str:
    for fn, f in reversed(frames):
        for label, match in CATEGORIES:
            if match(fn, f):
                return label
    leaf_fn, leaf_file = frames[-1] if frames else ("?", "?")
    return f"other ({leaf_file or leaf_fn})"


def summarise(raw_path: Path, top: int = 25) -> dict[str, Any]:
    stacks = parse_raw(raw_path.read_text(errors="replace").splitlines())
    total = sum(n for _, _, n in stacks)
    if not total:
        return {"samples": 0}
    categories: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    inclusive: Counter[tuple[str, str]] = Counter()
    self_time: Counter[tuple[str, str]] = Counter()
    threads: Counter[str] = Counter()
    for thread, frames, n in stacks:
        threads[thread] += n
        categories[_category(frames)] += n
        self_time[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
        for label, match in STAGES:
            if any(match(fn, f) for fn, f in frames):
                stages[label] += n

    def pct(n: int) -> float:
        return round(100.0 * n / total, 1)

    listing = [
        {
            "function": fn,
            "file": f,
            "inclusive_pct": pct(n),
            "self_pct": pct(self_time.get((fn, f), 0)),
        }
        for (fn, f), n in inclusive.most_common()
        if fn not in _ROOT_FUNCS and not any(r in f for r in _ROOT_FILES)
    ][:top]
    other = sum(n for label, n in categories.items() if label.startswith("other ("))
    cats = {
        label: pct(n) for label, n in categories.most_common() if not label.startswith("other (")
    }
    cats["other (stdlib and the rest)"] = pct(other)
    return {
        "samples": total,
        "threads_pct": {name: pct(k) for name, k in threads.most_common()},
        "categories_self_pct": cats,
        "stages_inclusive_pct": {label: pct(stages.get(label, 0)) for label, _ in STAGES},
        "top_cumulative": listing,
        "top_self": [
            {"function": fn, "file": f, "self_pct": pct(n)}
            for (fn, f), n in self_time.most_common(15)
        ],
    }
