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
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def check_event(data: dict[str, Any]) -> None:
    """AssertionError, naming the first problem, when ``data`` is not a valid event."""
    error = jsonschema.exceptions.best_match(validator().iter_errors(data))
    assert error is None, f"{data.get('type')} does not match the schema: {error.message}"
