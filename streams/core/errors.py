"""The root exception of the pure core."""

from __future__ import annotations


class CoreError(ValueError):
    """A core configuration (rules, stage model) is invalid."""
