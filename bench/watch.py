"""CPU accounting over a phase: our processes, and the rest of the machine.

The box is shared (other test runs may be on it), so every phase records how
many cores the worker, the broker, the baseline and the harness itself used,
and how many everything else did (``/proc/stat`` busy time minus ours).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from bench.procs import cpu_seconds

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def system_busy_seconds() -> float | None:
    """CPU seconds all cores have been busy since boot (``/proc/stat``)."""
    try:
        line = Path("/proc/stat").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    fields = [int(x) for x in line.split()[1:]]
    # user nice system idle iowait irq softirq steal [guest guest_nice: in user already]
    busy = fields[0] + fields[1] + fields[2] + sum(fields[5:8])
    return busy / _CLK_TCK


class CpuWatch:
    """Cores used per named process between :meth:`start` and :meth:`stop`."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = {"harness": os.getpid(), **pids}
        self._start: dict[str, float | None] = {}
        self._sys: float | None = None
        self._t = 0.0

    def start(self) -> CpuWatch:
        self._t = time.monotonic()
        self._start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._sys = system_busy_seconds()
        return self

    def stop(self) -> dict[str, float | None]:
        wall = time.monotonic() - self._t
        out: dict[str, float | None] = {}
        ours = 0.0
        for name, pid in self.pids.items():
            a, b = self._start.get(name), cpu_seconds(pid)
            used = (b - a) / wall if a is not None and b is not None and wall > 0 else None
            out[name] = round(used, 2) if used is not None else None
            ours += used or 0.0
        sys_now = system_busy_seconds()
        if self._sys is not None and sys_now is not None and wall > 0:
            busy = (sys_now - self._sys) / wall
            out["machine_busy"] = round(busy, 2)
            out["other_processes"] = round(max(0.0, busy - ours), 2)
        out["seconds"] = round(wall, 2)
        return out
