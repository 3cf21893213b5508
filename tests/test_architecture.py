"""The layout shows the architecture: the serving runtime (``recx_worker``) never imports the
offline ML (``training``), the developer tools (``recx_worker.devtools``) or the console
(``recx_worker.console``); the offline ML never imports the developer tools or the console;
and no two modules import each other in a cycle. Command modules (``cli.py``, ``*_cli.py``)
assemble every layer and are exempt from the layer rule."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("recx_worker", "training")
RUNTIME_FORBIDDEN = ("training", "recx_worker.devtools", "recx_worker.console")
OFFLINE_FORBIDDEN = ("recx_worker.devtools", "recx_worker.console")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {
        module_name(p): p
        for package in PACKAGES
        for p in sorted((ROOT / package).rglob("*.py"))
        if "__pycache__" not in p.parts
    }


def imports(path: Path) -> Iterator[str]:
    """Absolute names imported anywhere in ``path`` (``from a.b import c`` yields ``a.b`` and
    ``a.b.c``)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def module_imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``path`` needs loaded when it loads: ``from pkg import mod`` needs
    ``pkg.mod`` (Python loads it on demand), ``from mod import name`` needs ``mod``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    needed: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            needed |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{a.name}" for a in node.names} & known.keys()
            needed |= subs if len(subs) == len(node.names) else subs | {node.module}
    return needed & known.keys()


def is_command(name: str) -> bool:
    leaf = name.rsplit(".", 1)[-1]
    return leaf == "cli" or leaf.endswith("_cli") or leaf == "__main__"


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def layer_violations() -> list[str]:
    found = []
    for name, path in modules().items():
        if is_command(name):
            continue
        if within(name, ("recx_worker.devtools", "recx_worker.console")):
            continue  # the top layers may use everything below them
        forbidden = OFFLINE_FORBIDDEN if within(name, ("training",)) else RUNTIME_FORBIDDEN
        found += [f"{name} imports {imp}" for imp in imports(path) if within(imp, forbidden)]
    return sorted(set(found))


def import_cycles() -> list[list[str]]:
    """Cycles among load-time imports (what would break or order-depend at import)."""
    mods = modules()
    graph = {name: sorted(module_imports(path, mods) - {name}) for name, path in mods.items()}
    cycles, state = [], dict.fromkeys(graph, 0)  # 0 new, 1 on the stack, 2 done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in graph[node]:
            if state[nxt] == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif state[nxt] == 0:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in graph:
        if state[node] == 0:
            visit(node, [])
    return cycles


def test_no_module_imports_from_a_layer_above_it() -> None:
    assert layer_violations() == []


def test_no_import_cycles() -> None:
    assert import_cycles() == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import training.data\n", ["training.data"]),
        ("from recx_worker.devtools import demo\n", ["recx_worker.devtools"]),
        ("def f():\n    from recx_worker.console import app\n", ["recx_worker.console"]),
    ],
)
def test_the_checker_sees_every_kind_of_import(tmp_path: Path, source: str, expected) -> None:
    path = tmp_path / "m.py"
    path.write_text(source)
    assert expected[0] in set(imports(path))
