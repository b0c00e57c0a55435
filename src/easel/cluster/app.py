"""The Ray Serve application builder: `easel.cluster.app:build_app` in a Serve config file."""

from __future__ import annotations

import logging
from typing import Any

import ray
from ray import serve
from ray.serve import Application

from easel.cluster.args import ClusterArgs
from easel.cluster.groups import ModelGroup, model_groups
from easel.cluster.ingress import EaselIngress
from easel.cluster.matting import matting_application
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


def deployed_groups(cluster: ClusterArgs) -> list[ModelGroup]:
    """The deployed catalog names (the catalog less `undeployed`) by the deployment serving them."""
    return model_groups(spec for spec in cluster.catalog() if spec.name not in cluster.undeployed)


def model_demands(cluster: ClusterArgs, has_gpus: bool) -> dict[str, DeploymentDemand]:
    """Per model deployment (by name), what it asks of the cluster."""
    return {group.name: model_demand(group, has_gpus) for group in deployed_groups(cluster)}


def build_app(args: dict[str, Any]) -> Application:
    """One model deployment per group of deployed catalog names that share a pipeline, the
    matting deployment (while matting is on), and the ingress that routes each name to its
    group's.

    Ray calls this with the config file's `args` (`serve deploy`); `easel cluster serve` calls it
    with the args it built from its flags.
    """
    cluster = ClusterArgs.model_validate(args)
    has_gpus = cluster_has_gpus()
    models: dict[str, Application] = {}
    for group in deployed_groups(cluster):
        # One application object per group: Ray deploys it once, however many names it serves.
        application = model_deployment(group, model_demand(group, has_gpus)).bind(group)
        models.update(dict.fromkeys(group.names, application))
        log.info("Easel model deployment %s: %s", group.name, ", ".join(group.names))
    log.info("GPUs in the cluster: %s", has_gpus)
    ingress = ingress_demand(cluster)
    deployment = serve.deployment(
        name=ingress.name,
        num_replicas=ingress.replicas,
        max_ongoing_requests=cluster.ingress.max_ongoing_requests,
        ray_actor_options=ingress.actor_options(),
    )(EaselIngress)
    return deployment.bind(cluster, models, matting_application(cluster, has_gpus))
