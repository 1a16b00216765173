"""journeyflow's running system: the pure core (``streams.core``) and the
Faust shell around it (app, topics, agents, web, CLI)."""

from __future__ import annotations

__version__ = "0.1.0"
