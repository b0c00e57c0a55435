"""The Ray Serve application builder: `easel.cluster.app:build_app` in a Serve config file."""

from __future__ import annotations

import logging
from typing import Any

import ray
from ray import serve
from ray.serve import Application

from easel.cluster.args import ClusterArgs
from easel.cluster.ingress import EaselIngress
from easel.cluster.model import model_deployment

INGRESS_NAME = "ingress"

log = logging.getLogger(__name__)


def build_app(args: dict[str, Any]) -> Application:
    """One model deployment per catalog model, and the ingress that routes to them.

    Ray calls this with the config file's `args` (`serve deploy`); `easel cluster serve` calls it
    with the args it built from its flags.
    """
    cluster = ClusterArgs.model_validate(args)
    catalog = cluster.catalog()
    has_gpus = ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0
    models = {spec.name: model_deployment(spec, has_gpus).bind(spec) for spec in catalog}
    log.info("Easel application: models %s, GPUs in the cluster: %s", ", ".join(models), has_gpus)
    ingress = serve.deployment(
        name=INGRESS_NAME,
        num_replicas=cluster.ingress.replicas,
        max_ongoing_requests=cluster.ingress.max_ongoing_requests,
        ray_actor_options={"num_cpus": cluster.ingress.cpus_per_replica},
    )(EaselIngress)
    return ingress.bind(cluster, models)
