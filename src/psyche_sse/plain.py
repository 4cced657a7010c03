"""Dataclasses to JSON types and back: the one place the protocol's values change form.

:func:`plain` is the hot direction (every published event goes through it once), so it is
a small loop over each class's fields. The way back (:func:`unplain`) and the JSON schema
(:func:`json_schema`) are pydantic's, from the same dataclasses, so the three cannot drift.
A field whose metadata has ``omit_none`` is left out of the JSON while it is None.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from enum import Enum
from functools import cache
from types import MappingProxyType
from typing import Any, TypeVar, get_args, get_type_hints

T = TypeVar("T")

OMIT_NONE = MappingProxyType({"omit_none": True})
"""Field metadata: leave the field out of the JSON form while it is None."""


@cache
def _layout(cls: type) -> tuple[tuple[str, bool], ...]:
    return tuple((f.name, bool(f.metadata.get("omit_none"))) for f in fields(cls))


def plain(value: Any) -> Any:
    """``value`` with every dataclass a dict (fields in order), every tuple a list and
    every enum its value: what :func:`json.dumps` takes."""
    if is_dataclass(value) and not isinstance(value, type):
        out = {}
        for name, omit_none in _layout(type(value)):
            item = getattr(value, name)
            if item is None and omit_none:
                continue
            out[name] = plain(item)
        return out
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, Enum):
        return value.value
    return value


@cache
def _adapter(tp: Any) -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(tp)


def unplain(tp: type[T], data: Any) -> T:
    """The value of type ``tp`` that :func:`plain` made ``data`` from. ValueError (pydantic's
    ``ValidationError``) when ``data`` is not one."""
    result: T = _adapter(tp).validate_python(data)  # type: ignore[arg-type]
    return result


def json_schema(tp: Any) -> dict[str, Any]:
    """The JSON schema of ``tp``'s plain form: every field required, except those left out
    while None."""
    from pydantic import ConfigDict, TypeAdapter

    config = ConfigDict(json_schema_serialization_defaults_required=True)
    schema: dict[str, Any] = TypeAdapter(tp, config=config).json_schema(mode="serialization")
    optional = {
        cls.__name__: {f.name for f in fields(cls) if f.metadata.get("omit_none")}
        for cls in _dataclasses(tp)
    }
    for name, definition in schema.get("$defs", {}).items():
        if optional.get(name) and "required" in definition:
            definition["required"] = [f for f in definition["required"] if f not in optional[name]]
    return schema


def _dataclasses(tp: Any, seen: set[type] | None = None) -> set[type]:
    """The dataclasses ``tp`` is made of, itself included."""
    seen = set() if seen is None else seen
    if is_dataclass(tp) and isinstance(tp, type):
        if tp in seen:
            return seen
        seen.add(tp)
        for hint in get_type_hints(tp, include_extras=True).values():
            _dataclasses(hint, seen)
    for arg in get_args(tp):
        _dataclasses(arg, seen)
    return seen
