"""The root exception of the streams package (shell side)."""

from __future__ import annotations


class JourneyflowError(Exception):
    """A configuration or infrastructure fault: the command stops with this message."""
