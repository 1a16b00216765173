"""The core stays pure: no Faust, Kafka, metrics, HTTP, environment, clock or
randomness anywhere in ``streams.core`` or the project modules it imports.

Two checks: a static walk of the source (every module under
``streams/core`` and, transitively, every project module they import) and a
fresh interpreter that imports the core and looks at ``sys.modules``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "streams" / "core"
PROJECT_PACKAGES = frozenset({"streams", "schemas", "models"})

#: Top-level modules the core must not import: the shell's infrastructure,
#: I/O clients, and randomness (outputs must replay identically).
FORBIDDEN_MODULES = frozenset(
    {
        "faust",
        "mode",
        "aiokafka",
        "kafka",
        "confluent_kafka",
        "prometheus_client",
        "aiohttp",
        "requests",
        "httpx",
        "socket",
        "random",
        "secrets",
        "rocksdict",
    }
)
#: ``module.attribute`` uses that read the environment, the wall clock or chance.
FORBIDDEN_ATTRIBUTES = frozenset(
    {
        ("os", "environ"),
        ("os", "getenv"),
        ("os", "putenv"),
        ("time", "time"),
        ("time", "time_ns"),
        ("time", "monotonic"),
        ("time", "monotonic_ns"),
        ("time", "perf_counter"),
        ("time", "localtime"),
        ("time", "gmtime"),
        ("uuid", "uuid1"),
        ("uuid", "uuid4"),
    }
)
#: Methods that read the clock whatever the object is called (``datetime.now``,
#: ``dt.utcnow``, ``date.today``).
FORBIDDEN_METHODS = frozenset({"now", "utcnow", "today"})
#: Dynamic imports would hide a module from this walk.
FORBIDDEN_CALLS = frozenset({"__import__", "import_module"})


def module_file(name: str) -> Path | None:
    """The source file of a project module, or None if it is not one."""
    if name.split(".")[0] not in PROJECT_PACKAGES:
        return None
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".")
    package = package if is_package else package[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join([*package, node.module] if node.module else package)


def imported_modules(tree: ast.AST, module: str, is_package: bool = False) -> set[str]:
    """Every module name an import statement in ``tree`` may load, absolute."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node, is_package)
            found.add(base)
            # ``from pkg import sub`` may load the submodule ``pkg.sub``
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name}


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """What in one module's source breaks the core's purity, as ``module:line: why``."""
    tree = ast.parse(source)
    out: list[str] = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import | ast.ImportFrom):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                base = _resolve(module, node, is_package)
                names = [base]
                names += [f"{base}.{alias.name}" for alias in node.names]
            for name in names:
                if name.split(".")[0] in FORBIDDEN_MODULES:
                    out.append(f"{module}:{line}: imports {name}")
                head, _, attr = name.rpartition(".")
                if (head, attr) in FORBIDDEN_ATTRIBUTES:
                    out.append(f"{module}:{line}: imports {name}")
        elif isinstance(node, ast.Attribute):
            owner = node.value
            if isinstance(owner, ast.Name) and (owner.id, node.attr) in FORBIDDEN_ATTRIBUTES:
                out.append(f"{module}:{line}: uses {owner.id}.{node.attr}")
            if node.attr in FORBIDDEN_METHODS:
                out.append(f"{module}:{line}: reads the clock with .{node.attr}")
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if name in FORBIDDEN_CALLS:
                out.append(f"{module}:{line}: imports dynamically with {name}()")
    return out


def core_modules() -> list[str]:
    names = []
    for path in sorted(CORE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def import_closure(roots: list[str]) -> dict[str, Path]:
    """Project modules reachable from ``roots`` by imports (parent packages included)."""
    seen: dict[str, Path] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = module_file(name)
        if path is None:
            continue
        seen[name] = path
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        tree = ast.parse(path.read_text("utf-8"))
        todo.extend(imported_modules(tree, name, path.name == "__init__.py"))
    return seen


# --- the checks ----------------------------------------------------------------


def test_the_walk_covers_the_core_and_what_it_imports() -> None:
    closure = import_closure(core_modules())
    expected = {
        "streams.core.engine",
        "streams.core.ingest",
        "streams.core.journey",
        "streams.core.rules",
        "streams.core.pii",
        "streams.core.profile",
        "schemas.codec",
        "schemas.events",
        "schemas.outputs",
        "schemas",
        "streams",
    }
    assert expected <= set(closure)
    # the shell is not reachable from the core
    assert not {"streams.app", "streams.cli", "streams.settings", "streams.config"} & set(closure)


def test_the_core_and_its_project_imports_are_pure() -> None:
    found: list[str] = []
    for name, path in sorted(import_closure(core_modules()).items()):
        found += violations(path.read_text("utf-8"), name, path.name == "__init__.py")
    assert found == []


@pytest.mark.parametrize(
    "source",
    [
        "import faust",
        "from aiokafka import AIOKafkaProducer",
        "import prometheus_client.core",
        "from aiohttp import web",
        "import random",
        "from random import choice",
        "import os\nx = os.environ['JOURNEYFLOW_X']",
        "import os\nx = os.getenv('X')",
        "from os import environ",
        "from datetime import datetime, UTC\nx = datetime.now(UTC)",
        "import datetime\nx = datetime.datetime.utcnow()",
        "from datetime import date\nx = date.today()",
        "import time\nx = time.time()",
        "from time import time",
        "import uuid\nx = uuid.uuid4()",
        "import importlib\nm = importlib.import_module('faust')",
        "m = __import__('faust')",
    ],
)
def test_the_checker_catches_each_kind_of_impurity(source: str) -> None:
    assert violations(source, "streams.core.example") != []


@pytest.mark.parametrize(
    "source",
    [
        "import hashlib, hmac, re, uuid\nx = uuid.uuid5(uuid.NAMESPACE_URL, 'a')",
        "from datetime import UTC, datetime\nx = datetime.fromtimestamp(0, tz=UTC)",
        "from zoneinfo import ZoneInfo",
        "import orjson\nfrom pydantic import BaseModel",
    ],
)
def test_the_checker_allows_pure_code(source: str) -> None:
    assert violations(source, "streams.core.example") == []


def test_relative_imports_are_followed() -> None:
    tree = ast.parse("from . import journey\nfrom .rules import decide\nfrom .. import topics")
    assert imported_modules(tree, "streams.core.engine") >= {
        "streams.core.journey",
        "streams.core.rules",
        "streams.topics",
    }


def test_importing_the_core_loads_no_infrastructure() -> None:
    """In a fresh interpreter, so modules other tests imported do not count.
    (random, socket and secrets are left to the static walk: the standard
    library and pydantic load them for their own use.)"""
    script = textwrap.dedent(
        """
        import importlib, sys
        for name in %r:
            importlib.import_module(name)
        banned = %r
        shell = {"streams.app", "streams.cli", "streams.settings", "streams.config"}
        print(sorted(m for m in sys.modules if m.split(".")[0] in banned or m in shell))
        """
    ) % (core_modules(), sorted(FORBIDDEN_MODULES - {"random", "socket", "secrets"}))
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
