"""``schemas/asyncapi.yaml`` describes every public topic, is what the code
generates, and AsyncAPI's own parser (``@asyncapi/parser``, run by node)
finds it valid, its payload schemas resolved."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from schemas import asyncapi
from streams.settings import Settings
from streams.topics import topics_for

ROOT = Path(__file__).resolve().parents[2]
CHECKER = ROOT / "tests" / "asyncapi"


def test_the_committed_document_is_current() -> None:
    assert not asyncapi.stale(), "run: python -m schemas.asyncapi"


def test_every_public_topic_is_described_with_its_payload(tmp_path: Path) -> None:
    doc = yaml.safe_load(asyncapi.OUT.read_text("utf-8"))
    topics = topics_for(Settings.model_construct())
    public = [t.name for t in topics.all() if t.name.startswith("journeyflow.")]
    addresses = [c["address"] for c in doc["channels"].values()]
    assert sorted(addresses) == sorted(public)
    for message in doc["components"]["messages"].values():
        ref = message["payload"]["schema"]["$ref"]
        assert (asyncapi.OUT.parent / ref).is_file(), ref
    received = {
        doc["channels"][op["channel"]["$ref"].rsplit("/", 1)[1]]["address"]
        for op in doc["operations"].values()
        if op["action"] == "receive"
    }
    assert received == {topics.touchpoints.name, topics.feedback.name}


def test_asyncapi_s_parser_finds_it_valid() -> None:
    node = shutil.which("node")
    if node is None or not (CHECKER / "node_modules" / "@asyncapi" / "parser").is_dir():
        why = "node and `npm ci --prefix tests/asyncapi` are needed (.ci/run does both)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    done = subprocess.run(
        [node, str(CHECKER / "validate.mjs"), str(asyncapi.OUT)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    verdict = json.loads(done.stdout.splitlines()[-1])
    assert verdict["valid"] is True
    assert len(verdict["channels"]) == len(asyncapi.PUBLIC)
