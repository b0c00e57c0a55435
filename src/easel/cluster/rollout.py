"""Waiting, for a bounded time, for a deployed application to run, from Ray Serve's status API:
a deployment that cannot be scheduled or keeps failing is named, with Ray's reason."""

from __future__ import annotations

import time
from collections.abc import Callable

from ray import serve
from ray.serve._private.common import DeploymentStatus
from ray.serve.schema import ApplicationStatus, ApplicationStatusOverview

POLL_SECONDS = 1.0


class RolloutFailed(RuntimeError):
    """The application failed to deploy, or was not running in time; the message names why."""


def wait_until_running(app_name: str, timeout_s: float, on_message: Callable[[str], None]) -> None:
    """Return once `app_name` runs; raise RolloutFailed when it fails or `timeout_s` passes.

    `on_message` receives each new status message of a deployment while the wait lasts (Ray's
    word on replicas waiting for resources, or failing to start).
    """
    deadline = time.monotonic() + timeout_s
    seen: set[str] = set()
    while True:
        overview = serve.status().applications.get(app_name)
        if overview is not None:
            if overview.status is ApplicationStatus.RUNNING:
                return
            for name, deployment in overview.deployments.items():
                line = f"{name}: {deployment.message}"
                if deployment.message and line not in seen:
                    seen.add(line)
                    on_message(line)
            if overview.status is ApplicationStatus.DEPLOY_FAILED:
                raise RolloutFailed(describe(overview, "failed to deploy"))
        if time.monotonic() >= deadline:
            reason = f"was not running after {timeout_s:g} s"
            if overview is None:
                raise RolloutFailed(f"the application {reason}: Ray Serve never listed it")
            raise RolloutFailed(describe(overview, reason))
        time.sleep(POLL_SECONDS)


def describe(overview: ApplicationStatusOverview, what: str) -> str:
    """The application's status and, per deployment not healthy, its status and Ray's message."""
    lines = [f"the application {what} ({overview.status.value})"]
    lines += deployment_lines(overview) or [overview.message or "Ray Serve gave no reason"]
    return "\n  ".join(lines)


def deployment_lines(overview: ApplicationStatusOverview) -> list[str]:
    lines = []
    for name, deployment in overview.deployments.items():
        if deployment.status is not DeploymentStatus.HEALTHY:
            detail = f": {deployment.message}" if deployment.message else ""
            lines.append(f"{name} {deployment.status.value}{detail}")
    return lines
