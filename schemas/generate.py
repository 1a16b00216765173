"""Write the JSON Schema files under ``schemas/json/`` from the pydantic models.

python -m schemas.generate          # rewrite the files
python -m schemas.generate --check  # exit 1 if a committed file is stale
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from schemas.events import TouchpointAdapter
from schemas.outputs import Action, Alert, DeadLetter, Feedback, LiveTrigger, Merge

OUT_DIR = Path(__file__).resolve().parent / "json"

_MODELS: dict[str, type[BaseModel] | TypeAdapter[Any]] = {
    "touchpoint": TouchpointAdapter,
    "action": Action,
    "alert": Alert,
    "live_trigger": LiveTrigger,
    "dead_letter": DeadLetter,
    "merge": Merge,
    "feedback": Feedback,
}


def render_all() -> dict[str, str]:
    """File name -> JSON text of every schema."""
    out: dict[str, str] = {}
    for name, model in _MODELS.items():
        schema = (
            model.json_schema() if isinstance(model, TypeAdapter) else model.model_json_schema()
        )
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://journeyflow.dev/schemas/{name}.v1.schema.json",
            "title": schema.pop("title", name),
            **schema,
        }
        out[f"{name}.v1.schema.json"] = (
            json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
        )
    return out


def stale(directory: Path = OUT_DIR) -> list[str]:
    """Files missing or different from what the models generate."""
    return [
        name
        for name, text in render_all().items()
        if not (directory / name).exists() or (directory / name).read_text("utf-8") != text
    ]


def main(argv: list[str]) -> int:
    if "--check" in argv:
        bad = stale()
        for name in bad:
            print(f"stale: schemas/json/{name} (run: python -m schemas.generate)")
        return 1 if bad else 0
    OUT_DIR.mkdir(exist_ok=True)
    for name, text in render_all().items():
        (OUT_DIR / name).write_text(text, "utf-8")
        print(f"wrote schemas/json/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
