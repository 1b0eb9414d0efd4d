"""The benches in bench/ run by hand, so nothing else notices when what they use of nightlake
moves (the regroup of issue 11 moved ``sync`` out of ``nightlake.detrends.mirror``, and
bench/speed.py's goal 5 failed only when it was run). Every ``from nightlake… import name`` in
them, at any depth, must resolve, and so must every ``module.name`` of an imported nightlake
module."""

from __future__ import annotations

import ast
import importlib
import types
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _uses() -> list[tuple[str, str, str]]:
    """(bench:line, module, name) of each nightlake name a bench imports or looks up."""
    found = []
    for path in sorted(BENCH.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        modules: dict[str, str] = {}  # local name -> nightlake module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nightlake"):
                for alias in node.names:
                    found.append((f"{path.name}:{node.lineno}", node.module, alias.name))
                    modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("nightlake") and alias.asname:
                        modules[alias.asname] = alias.name
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in modules
            ):
                found.append((f"{path.name}:{node.lineno}", modules[node.value.id], node.attr))
    return found


def _resolve(module: str, name: str) -> object:
    try:
        loaded = importlib.import_module(module)
    except ModuleNotFoundError:  # ``module`` is itself a name in its parent
        parent, _, attr = module.rpartition(".")
        loaded = getattr(importlib.import_module(parent), attr)
    if not hasattr(loaded, name) and isinstance(loaded, types.ModuleType):
        importlib.import_module(f"{loaded.__name__}.{name}")  # a submodule, or raises
    return getattr(loaded, name)


def test_the_benches_use_nightlake():
    assert len(_uses()) > 20


@pytest.mark.parametrize(("where", "module", "name"), _uses())
def test_what_a_bench_uses_of_nightlake_exists(where, module, name):
    try:
        _resolve(module, name)
    except (ImportError, AttributeError) as exc:
        pytest.fail(f"bench/{where}: {module}.{name} does not exist ({exc})")
