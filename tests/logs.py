"""Reading a running server's JSON log lines."""

from __future__ import annotations

import json
import time
from typing import Any

from tests.server import RunningServer


def log_lines(server: RunningServer, request_id: str, count: int) -> list[dict[str, Any]]:
    """The request's JSON log lines, waiting for the access line written after the response."""
    deadline = time.monotonic() + 30
    while True:
        lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
        mine = [line for line in lines if line["request_id"] == request_id]
        if len(mine) >= count or time.monotonic() > deadline:
            return mine
        time.sleep(0.05)
