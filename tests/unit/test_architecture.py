"""The package's shape: no state at module level, and no import cycle.

State belongs to an object the app creates, so nothing needs resetting between tests or
servers; a module-level ``dict`` or ``global`` is how shared state creeps back. Read from the
sources with :mod:`ast`, nothing imported. ``python tools/imports.py`` prints the graph.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tools.imports import SOURCE, cycles, edges, modules

# Constructors of mutable containers, locks and events, by their last name (``threading.Lock``
# and ``Lock`` alike).
MUTABLE_CALLS = frozenset(
    {
        "dict",
        "list",
        "set",
        "bytearray",
        "OrderedDict",
        "defaultdict",
        "deque",
        "Counter",
        "ChainMap",
        "WeakSet",
        "WeakKeyDictionary",
        "WeakValueDictionary",
        "Lock",
        "RLock",
        "Semaphore",
        "BoundedSemaphore",
        "Condition",
        "Event",
        "Queue",
        "ContextVar",
    }
)
MUTABLE_DISPLAYS = (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)

# Bindings left to work under way elsewhere, as (module path, name): remove each once fixed.
PENDING: frozenset[tuple[str, str]] = frozenset()


def _called(node: ast.expr) -> str:
    func = node.func if isinstance(node, ast.Call) else None
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _frozen(cls: ast.ClassDef) -> bool:
    """A frozen dataclass, or a NamedTuple or Enum: instances nobody can change."""
    for deco in cls.decorator_list:
        if isinstance(deco, ast.Call) and any(
            k.arg == "frozen" and isinstance(k.value, ast.Constant) and k.value.value is True
            for k in deco.keywords
        ):
            return True
    bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in cls.bases}
    return bool(bases & {"NamedTuple", "Enum", "StrEnum", "IntEnum"})


def _mutable(value: ast.expr | None, mutable_classes: frozenset[str] = frozenset()) -> bool:
    """A display, a comprehension, or a call to a mutable constructor or to a class of the
    module that is not frozen."""
    if isinstance(value, MUTABLE_DISPLAYS):
        return True
    return value is not None and _called(value) in MUTABLE_CALLS | mutable_classes


Binding = ast.Assign | ast.AnnAssign | ast.AugAssign


def _shared_bindings(body: list[ast.stmt]) -> Iterator[Binding]:
    """The assignments run once per process: at module level (under ``if``/``try`` too) and
    in class bodies, whose attributes every instance shares."""
    for node in body:
        if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            yield node
        elif isinstance(node, ast.ClassDef):
            yield from _shared_bindings(node.body)
        elif isinstance(node, ast.If | ast.Try | ast.With):
            for block in ("body", "orelse", "finalbody", "handlers"):
                for child in getattr(node, block, []):
                    yield from _shared_bindings(
                        child.body if isinstance(child, ast.ExceptHandler) else [child]
                    )


def _names(node: Binding) -> set[str]:
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}


def _problems(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    where = path.relative_to(SOURCE.parent).as_posix()
    classes = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
    mutable_classes = frozenset(c.name for c in classes if not _frozen(c))
    for node in _shared_bindings(tree.body):
        if (
            _mutable(node.value, mutable_classes)
            and not {(where, n) for n in _names(node)} <= PENDING
        ):
            names = ", ".join(sorted(_names(node)))
            yield f"{where}:{node.lineno}: {names} binds a mutable value once per process"
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            yield f"{where}:{node.lineno}: global {', '.join(node.names)}"


def test_no_module_holds_mutable_state() -> None:
    found = [problem for path in modules().values() for problem in _problems(path)]
    assert not found, "\n".join(found)


def test_the_checks_see_what_they_look_for() -> None:
    source = (
        "import threading\n"
        "__all__ = ['a']\n"
        "CACHE: dict[str, int] = {}\n"
        "LOCK = threading.Lock()\n"
        "NAMES = frozenset({'a'})\n"
        "class C:\n"
        "    seen = set()\n"
        "def f():\n"
        "    global X\n"
        "@dataclass(frozen=True)\n"
        "class D:\n"
        "    x: int\n"
        "ONE = D(1)\n"
        "SHARED = C()\n"
    )
    tree = ast.parse(source)
    bound = [n.lineno for n in _shared_bindings(tree.body) if _mutable(n.value, frozenset("C"))]
    assert bound == [2, 3, 4, 7, 14]
    assert [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Global)] == [9]
    frozen = [c.name for c in ast.walk(tree) if isinstance(c, ast.ClassDef) and _frozen(c)]
    assert frozen == ["D"]


def test_the_modules_import_one_another_without_a_cycle() -> None:
    found = cycles(edges())
    assert not found, "\n".join(" <-> ".join(c) for c in found)


def test_the_import_graph_sees_relative_and_deferred_imports() -> None:
    graph = edges()
    assert "psyche_sse.llm.client" in graph["psyche_sse.llm"]  # from .client import ...
    assert "psyche_sse.web.server" in graph["psyche_sse.cli"]  # inside a function
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_two_classes_share_a_name() -> None:
    """One name, one meaning: two ``Transcript`` classes is how values start to be wrapped
    and unwrapped between layers."""
    where: dict[str, list[str]] = {}
    for path in SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                where.setdefault(node.name, []).append(str(path.relative_to(SOURCE)))
    assert {name: paths for name, paths in where.items() if len(paths) > 1} == {}
