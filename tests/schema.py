"""The published event schema, as clients would use it: every event a test receives from a
server is checked against ``docs/events.schema.json``."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA_FILE = Path(__file__).parents[1] / "docs" / "events.schema.json"


@cache
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(loaded)
    return loaded


@cache
def validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema())


@cache
def by_type() -> dict[str, jsonschema.Draft202012Validator]:
    """A validator of each event type's own schema, named by the schema's discriminator.

    The schema is ``oneOf`` the event types, each of which requires ``type`` and pins it to
    a constant of its own: an event can hold for one branch only, the one its type names, so
    it is valid exactly when it is valid for that branch. Checked here, once; checking the one
    branch spares trying the event against every other (and building their errors), which
    is most of the time a test spends reading a stream.
    """
    events = schema()
    defs = events["$defs"]
    mapping: dict[str, str] = events["discriminator"]["mapping"]
    assert events["discriminator"]["propertyName"] == "type"
    assert sorted(mapping.values()) == sorted(ref["$ref"] for ref in events["oneOf"])
    for kind, ref in mapping.items():
        branch = defs[ref.removeprefix("#/$defs/")]
        assert "type" in branch["required"] and branch["properties"]["type"]["const"] == kind
    return {
        kind: jsonschema.Draft202012Validator({"$ref": ref, "$defs": defs})
        for kind, ref in mapping.items()
    }


def check_event(data: dict[str, Any]) -> None:
    """AssertionError, naming the first problem, when ``data`` is not a valid event."""
    kind = data.get("type")
    checker = by_type().get(kind) if isinstance(kind, str) else None
    errors = (checker or validator()).iter_errors(data)
    error = jsonschema.exceptions.best_match(errors)
    assert error is None, f"{data.get('type')} does not match the schema: {error.message}"
