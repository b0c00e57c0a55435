"""Running `easel` commands that take no data directory, as a user would in a shell."""

from __future__ import annotations

import os
import subprocess
import sys


def run_easel(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "easel", *args],
        capture_output=True,
        text=True,
        input=stdin,
        env={**os.environ, **(env or {})},
        timeout=300,
    )
