"""The Ray Serve application builder: `easel.cluster.app:build_app` in a Serve config file."""

from __future__ import annotations

import logging
from typing import Any

import ray
from ray import serve
from ray.serve import Application

from easel.cluster.args import ClusterArgs
from easel.cluster.ingress import EaselIngress
from easel.cluster.model import model_demand, model_deployment
from easel.cluster.resources import DeploymentDemand

INGRESS_NAME = "ingress"

log = logging.getLogger(__name__)


def cluster_has_gpus() -> bool:
    return ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0


def ingress_demand(cluster: ClusterArgs) -> DeploymentDemand:
    return DeploymentDemand(
        name=INGRESS_NAME,
        replicas=cluster.ingress.replicas,
        per_replica={"CPU": cluster.ingress.cpus_per_replica},
    )


def model_demands(cluster: ClusterArgs, has_gpus: bool) -> dict[str, DeploymentDemand]:
    """Per deployed model (the catalog less `undeployed`), what its deployment asks."""
    return {
        spec.name: model_demand(spec, has_gpus)
        for spec in cluster.catalog()
        if spec.name not in cluster.undeployed
    }


def build_app(args: dict[str, Any]) -> Application:
    """One model deployment per deployed catalog model, and the ingress that routes to them.

    Ray calls this with the config file's `args` (`serve deploy`); `easel cluster serve` calls it
    with the args it built from its flags.
    """
    cluster = ClusterArgs.model_validate(args)
    has_gpus = cluster_has_gpus()
    demands = model_demands(cluster, has_gpus)
    models = {
        spec.name: model_deployment(spec, demands[spec.name]).bind(spec)
        for spec in cluster.catalog()
        if spec.name in demands
    }
    log.info("Easel application: models %s, GPUs in the cluster: %s", ", ".join(models), has_gpus)
    ingress = ingress_demand(cluster)
    deployment = serve.deployment(
        name=ingress.name,
        num_replicas=ingress.replicas,
        max_ongoing_requests=cluster.ingress.max_ongoing_requests,
        ray_actor_options=ingress.actor_options(),
    )(EaselIngress)
    return deployment.bind(cluster, models)
