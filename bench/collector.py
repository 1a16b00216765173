"""What the garbage collector setting saves, in process (no Kafka):
``python -m bench.collector``.

The worker's batch protocol (:func:`bench.ceiling._batch_pass`) over the same
simulated bytes, alternating CPython's collector defaults
(``JOURNEYFLOW_GC_THRESHOLD=0``) with the worker's setting
(``streams.collector``: what is loaded frozen, the youngest generation
collected every ``--threshold`` allocations), ``--pairs`` times, each pass in
a fresh process (so neither inherits the other's heap). This machine's speed
drifts by tens of percent within minutes, so each pair is compared on its
own and the median of the pairs' differences is the result.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_PASS = """
import sys
from bench import ceiling
from bench.decisions import inputs
from streams import collector
from streams.settings import Settings
events, threshold = int(sys.argv[1]), int(sys.argv[2])
data = inputs(events, 7, 2000)
settings = Settings(gc_threshold=threshold)
collector.tune(threshold)
_, cpu, _ = ceiling._batch_pass(data, settings)
print(cpu)
"""


def one_pass(events: int, threshold: int) -> float:
    """CPU seconds of one batch-protocol pass in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", _PASS, str(events), str(threshold)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.collector", description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--threshold", type=int, default=50_000)
    parser.add_argument("--output", type=Path, help="results JSON (default: stdout only)")
    args = parser.parse_args(argv)
    pairs = []
    for i in range(args.pairs):
        first, second = (0, args.threshold) if i % 2 == 0 else (args.threshold, 0)
        cpu = {first: one_pass(args.events, first), second: one_pass(args.events, second)}
        default, tuned = cpu[0] / args.events * 1e6, cpu[args.threshold] / args.events * 1e6
        pairs.append({"default_us": round(default, 1), "tuned_us": round(tuned, 1)})
        print(f"pair {i + 1}: defaults {default:.0f} µs/event, tuned {tuned:.0f}", file=sys.stderr)
    saved = [1 - p["tuned_us"] / p["default_us"] for p in pairs]
    result = {
        "command": " ".join(["python -m bench.collector", *(argv or sys.argv[1:])]),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": vars(args) | {"output": str(args.output) if args.output else None},
        "pairs": pairs,
        "median_saved": round(statistics.median(saved), 3),
        "saved_range": [round(min(saved), 3), round(max(saved), 3)],
    }
    if args.output:
        args.output.write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
