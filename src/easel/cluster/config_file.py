"""The Ray Serve config file that deploys Easel with `serve deploy` (or KubeRay's RayService)."""

from __future__ import annotations

from typing import Any

import yaml

from easel.cluster.args import ClusterArgs

APP_NAME = "easel"
# The builder Ray imports on the cluster (easel.cluster.app needs Ray; this module does not).
IMPORT_PATH = "easel.cluster.app:build_app"

HEADER = """\
# Ray Serve config for Easel, written by `easel cluster config`.
# Deploy: serve deploy THIS_FILE --address http://HEAD:8265   (or paste into a KubeRay RayService's
# spec.serveConfigV2). Every node needs Easel installed (pip install 'easel[cluster]') and the model
# sources under `args.models.*.source` reachable (hub ids, or paths present on every node).
# Secrets are not written here: give the cluster's processes EASEL_DATABASE_URL, EASEL_URL_SECRET
# and the AWS_* settings through their environment (or a runtime_env.env_vars block below).
"""


def serve_config(
    args: ClusterArgs, host: str, port: int, app_name: str = APP_NAME
) -> dict[str, Any]:
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": host, "port": port},
        "applications": [
            {
                "name": app_name,
                "route_prefix": "/",
                "import_path": IMPORT_PATH,
                "args": args.model_dump(mode="json", exclude_none=True),
            }
        ],
    }


def render(config: dict[str, Any]) -> str:
    return HEADER + yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
