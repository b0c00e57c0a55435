"""Easel's log lines on a Ray Serve replica go where Serve's own go: the replica's log file, with
the replica and request ids Serve adds."""

from __future__ import annotations

import logging

# The logger Ray Serve documents for application code in replicas.
SERVE_LOGGER_NAME = "ray.serve"


def send_easel_logs_to_serve(level: int = logging.INFO) -> None:
    """Call in a replica's constructor, after Serve has set its logger up."""
    easel = logging.getLogger("easel")
    easel.handlers = list(logging.getLogger(SERVE_LOGGER_NAME).handlers)
    easel.setLevel(level)
    easel.propagate = False
