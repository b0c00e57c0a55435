"""System programs that some tests drive (PostgreSQL's server, Chromium), which `scripts/setup`
installs from Debian's packages rather than pip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def running_in_ci() -> bool:
    """CI sets CI=true: there every test must run."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false")


def require_program(program: Path | None, missing: str) -> Path:
    """`program` when it exists. Else the test skips, saying what is missing, on a developer's
    machine, and fails in CI, where a skip would hide that the suite no longer covers it."""
    if program is not None and program.exists():
        return program
    message = f"{missing}: `bash scripts/setup` installs it"
    if running_in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
