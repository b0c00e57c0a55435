"""Per-request context: the request id that ties a response to its log lines, and the headers
the request's code adds to its response."""

from __future__ import annotations

import contextvars
import logging

from easel.observability.logs import request_id_var

__all__ = [
    "RequestIdLogFilter",
    "current_response_headers",
    "request_id_var",
    "response_headers_var",
]

# One dict per request, set by the middleware; shared (not copied) by the tasks the request spawns.
response_headers_var: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "response_headers", default=None
)


def current_response_headers() -> dict[str, str]:
    """The headers the current request's response will carry (a detached dict outside a request)."""
    headers = response_headers_var.get()
    return headers if headers is not None else {}


class RequestIdLogFilter(logging.Filter):
    """Adds `request_id` to every log record so formats can print it: the current request's, unless
    the record names its requests itself (`extra={"request_id": ...}`, as the batcher's do)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True
