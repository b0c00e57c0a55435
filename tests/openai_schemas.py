"""OpenAI's response schemas, kept as data in tests/data so the suite needs nothing outside the
repository (where they come from: the file's `description`)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema

SCHEMAS_FILE = Path(__file__).parent / "data" / "openai_images_schemas.json"


@functools.cache
def _components() -> dict[str, Any]:
    # Read at first use, not at import: a missing file fails the tests that validate, loudly,
    # instead of stopping collection.
    components: dict[str, Any] = json.loads(SCHEMAS_FILE.read_text(encoding="utf-8"))["components"]
    return components


def validate(instance: object, schema_name: str) -> None:
    """Raise jsonschema.ValidationError unless `instance` is a valid OpenAI `schema_name`."""
    components = _components()
    jsonschema.validate(instance, {**components["schemas"][schema_name], "components": components})
