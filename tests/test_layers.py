"""The package's layers: core (errors, files, sql, columns, lake) under the domain packages
(ingest, query, detrends) under the web app under the CLI. A module imports its own layer or
lower ones, and no chain of module-level imports comes back to where it started.

The package itself (``nightlake/__init__.py``) is the front door, ``from nightlake import
Lake``: it hands out the query layer's Lake, so it stands on the query layer, and a core module
cannot reach the connection through it either."""

from __future__ import annotations

import ast
import random
import subprocess
import sys
from pathlib import Path

import nightlake

PACKAGE = Path(nightlake.__file__).resolve().parent
LAYERS = {"core": 0, "ingest": 1, "query": 1, "detrends": 1, "web": 2, "cli": 3}
#: Upward imports that are still there, each with why; the test fails when one goes away
#: too, so this list only shrinks.
KNOWN_UPWARD: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:  # the front door (see the module's doc)
        return LAYERS["query"]
    return LAYERS.get(parts[1], 0)


def resolve(name: str) -> str | None:
    """The nightlake module an import names (``from pkg import submodule`` included)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(source: str, importer: str, *, top_level_only: bool) -> set[str]:
    """The nightlake modules ``source`` imports: every import, or only those run at import
    time (not inside a function, not under ``if TYPE_CHECKING``)."""
    tree = ast.parse(source)
    found: set[str] = set()

    def visit(node, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                inner = True
            if not (top_level_only and inner):
                names: list[str] = []
                if isinstance(child, ast.Import):
                    names = [a.name for a in child.names]
                elif isinstance(child, ast.ImportFrom):
                    base = child.module or ""
                    if child.level:
                        package = importer.split(".")
                        if MODULES[importer].name != "__init__.py":
                            package = package[:-1]
                        package = package[: len(package) - child.level + 1]
                        base = ".".join(package + ([base] if base else []))
                    names = [f"{base}.{a.name}" for a in child.names] + [base]
                for name in names:
                    if name.startswith("nightlake") and (target := resolve(name)):
                        if target != importer:
                            found.add(target)
            visit(child, inner)

    visit(tree, False)
    return found


def graph(*, top_level_only: bool) -> dict[str, set[str]]:
    return {m: imports(p.read_text(), m, top_level_only=top_level_only) for m, p in MODULES.items()}


def upward(edges: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {(a, b) for a, targets in edges.items() for b in targets if layer(b) > layer(a)}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every module-level import cycle, one path each (a package importing its own
    submodules in ``__init__`` is how packages work and is not one)."""
    found, state = [], {}

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if nxt.startswith(node + "."):
                continue
            if state.get(nxt) == 1:
                found.append(path[path.index(nxt) :] + [nxt])
            elif nxt not in state:
                walk(nxt, path + [nxt])
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            walk(module, [module])
    return found


def test_no_module_imports_an_upper_layer():
    assert upward(graph(top_level_only=False)) == KNOWN_UPWARD


def test_no_import_cycles():
    assert cycles(graph(top_level_only=True)) == []


def test_the_scan_sees_an_upward_import_and_a_cycle():
    """The checks themselves: a made-up upward import and a made-up cycle are found."""
    assert imports("from nightlake.cli.app import app", "nightlake.files", top_level_only=True) == {
        "nightlake.cli.app"
    }
    lazy = "def f():\n    from nightlake.cli import options\n"
    assert imports(lazy, "nightlake.files", top_level_only=True) == set()
    assert imports(lazy, "nightlake.files", top_level_only=False) == {
        "nightlake.cli",
        "nightlake.cli.options",
    }
    assert upward({"nightlake.files": {"nightlake.query.stream"}}) == {
        ("nightlake.files", "nightlake.query.stream")
    }
    # ``from nightlake import Lake`` in the core is the query layer all the same
    front_door = imports("from nightlake import Lake", "nightlake.lake", top_level_only=False)
    assert upward({"nightlake.lake": front_door}) == {("nightlake.lake", "nightlake")}
    assert cycles({"nightlake.a": {"nightlake.b"}, "nightlake.b": {"nightlake.a"}}) == [
        ["nightlake.a", "nightlake.b", "nightlake.a"]
    ]


def test_every_module_imports_first_in_a_fresh_interpreter_in_random_order():
    """Import order must not matter: each module first, then all others shuffled."""
    names = [m for m in MODULES if not m.endswith("__main__")]
    order = names[:]
    random.Random(20261201).shuffle(order)
    script = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    # two orders, one process each; the static cycle check above covers every module
    for start in (0, len(order) // 2):
        rotated = order[start:] + order[:start]
        result = subprocess.run(
            [sys.executable, "-c", script, *rotated], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr[-2000:]
