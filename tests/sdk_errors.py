"""The error object of an `openai` SDK exception, typed for the tests that read it."""

from __future__ import annotations

from typing import Any

import openai


def error_body(exc: openai.APIStatusError) -> dict[str, Any]:
    """The envelope's `error` object, which the SDK keeps as `body` (typed `object` there)."""
    assert isinstance(exc.body, dict), exc.body
    return exc.body
