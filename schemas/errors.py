"""The root exception of the schemas package."""

from __future__ import annotations


class SchemaError(ValueError):
    """Something does not meet the journeyflow event contract."""
