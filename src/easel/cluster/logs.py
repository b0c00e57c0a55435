"""Easel's log lines on a Ray Serve replica go where Serve's own go: the replica's log file, with
the replica and request ids Serve adds."""

from __future__ import annotations

import logging

# The logger Ray Serve documents for application code in replicas.
SERVE_LOGGER_NAME = "ray.serve"


def send_easel_logs_to_serve() -> None:
    """Call in a replica's constructor, after Serve has set its logger up: Easel's lines take its
    handlers and its level (the application's `logging_config`, which `easel cluster serve
    --log-level` sets)."""
    serve_logger = logging.getLogger(SERVE_LOGGER_NAME)
    easel = logging.getLogger("easel")
    easel.handlers = list(serve_logger.handlers)
    easel.setLevel(serve_logger.getEffectiveLevel())
    easel.propagate = False
