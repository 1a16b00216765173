"""Test-session rules shared by every tier."""

from __future__ import annotations

import os

import pytest


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI an integration test may never be skipped: a skip there means the
    broker did not start, and a green run would hide it."""
    if not os.environ.get("CI"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    skipped = [r for r in reporter.stats.get("skipped", []) if "tests/integration" in str(r.nodeid)]
    if skipped:
        reporter.write_line(
            f"FAILED: {len(skipped)} integration test(s) skipped in CI; they must run",
            red=True,
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
