"""The README matches the code: its test command is CI's, every setting is
documented, and its metrics catalog is the one the worker exports."""

from __future__ import annotations

from pathlib import Path

from streams.metrics import catalog_markdown
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_ci_runs_the_readme_test_command() -> None:
    lines = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if "pytest" in ln]
    assert lines, ".ci/run must run pytest"
    assert lines[-1].strip() in README


def test_every_setting_is_documented() -> None:
    missing = [
        f"JOURNEYFLOW_{name.upper()}"
        for name in Settings.model_fields
        if f"`JOURNEYFLOW_{name.upper()}`" not in README
    ]
    assert not missing, f"settings missing from the README: {missing}"


def test_the_metrics_catalog_is_the_code_s() -> None:
    start = "<!-- metrics catalog: python -m streams.metrics -->\n"
    end = "\n<!-- end of metrics catalog -->"
    assert start in README and end in README, "the README has no metrics catalog"
    written = README.split(start, 1)[1].split(end, 1)[0]
    assert written == catalog_markdown(), (
        "the README's metrics catalog is stale: paste `python -m streams.metrics` over it"
    )
