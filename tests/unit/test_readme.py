"""The README matches the code: its test command is CI's, and every setting
is documented."""

from __future__ import annotations

from pathlib import Path

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
