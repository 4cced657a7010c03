"""The import graph of ``src/psyche_sse``: its modules, who imports whom, and any cycle.

Run ``python tools/imports.py`` (or name another copy of the package's directory, such as
an old checkout's ``src/psyche_sse``, as its argument). It reads the sources with
:mod:`ast` (nothing is imported), resolves relative imports, and counts an import wherever it
is written, in a function body too: an import deferred into a function still ties the two
modules together, it only moves the failure from import time to call time. Imports under
``if TYPE_CHECKING:`` are left out, as they never run.
"""

from __future__ import annotations

import ast
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

PACKAGE = "psyche_sse"
SOURCE = Path(__file__).resolve().parent.parent / "src" / PACKAGE


def modules(root: Path = SOURCE) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__``)."""
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = [PACKAGE, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements that run, at module level or in any function."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                yield from _imports_of(child)
        else:
            yield from _imports(node)


def _imports_of(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    else:
        yield from _imports(node)


def _resolve(name: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module an ``from ... import`` names, from module ``name`` at ``path``."""
    if not node.level:
        return node.module or ""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def edges(found: Mapping[str, Path] | None = None) -> dict[str, set[str]]:
    """For each module, the modules of the package it imports.

    ``from . import x`` counts as importing ``x`` when ``x`` is a module, and ``from .m
    import x`` as importing ``m`` (and ``m.x`` when that is a module). Importing a submodule
    from outside its package runs the package's ``__init__`` first, so that counts as
    importing the package too; from inside, the package is already under way.
    """
    found = modules() if found is None else found
    graph: dict[str, set[str]] = {name: set() for name in found}
    for name, path in found.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in _imports(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _resolve(name, path, node)
                subs = [f"{base}.{alias.name}" for alias in node.names]
                targets = [s for s in subs if s in found] or [base]
                if len(targets) < len(subs) and base in found:
                    targets.append(base)
            for target in targets:
                # ``import a.b.c`` binds ``a`` and imports ``a.b.c``: the longest known name.
                while target and target not in found:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
                    graph[name].update(_packages_entered(name, target, found))
    return graph


def _packages_entered(name: str, target: str, found: Mapping[str, Path]) -> Iterator[str]:
    """The packages whose ``__init__`` runs when module ``name`` imports ``target``."""
    parts = target.split(".")
    for end in range(1, len(parts)):
        package = ".".join(parts[:end])
        if package in found and not name.startswith(package + ".") and package != name:
            yield package


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def main(argv: list[str]) -> int:
    graph = edges(modules(Path(argv[0]))) if argv else edges()
    print(f"{len(graph)} modules, {sum(map(len, graph.values()))} edges\n")
    for name in sorted(graph):
        targets = sorted(graph[name])
        print(f"{name} -> {', '.join(targets) if targets else '(none)'}")
    found = cycles(graph)
    print()
    if not found:
        print("no cycles")
        return 0
    for component in found:
        print(f"cycle: {' <-> '.join(component)}")
    return 1


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BrokenPipeError:  # its reader went away (``| head``): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
