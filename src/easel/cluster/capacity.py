"""Fitting Easel's application to the Ray cluster it is about to be deployed on."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence

import ray

from easel.cluster.app import deployed_groups, ingress_demand
from easel.cluster.args import ClusterArgs
from easel.cluster.matting import matting_demand
from easel.cluster.model import model_demand
from easel.cluster.resources import DeploymentDemand, fit, shortages

# What a client asking for a model that was left out reads; the operator's output has the numbers.
NO_ROOM = "it was not deployed: the Ray cluster had no room for it next to the configured models."

log = logging.getLogger(__name__)


def live_nodes() -> list[Mapping[str, float]]:
    """Each live node's total resources, of the Ray cluster this process is connected to."""
    return [node["Resources"] for node in ray.nodes() if node["Alive"]]


def fit_to_cluster(
    cluster: ClusterArgs, nodes: Sequence[Mapping[str, float]], has_gpus: bool
) -> tuple[ClusterArgs, dict[tuple[str, ...], str]]:
    """`cluster` with the model deployments whose names all keep their built-in weights and find
    no room on `nodes` (`live_nodes`) left undeployed, and the names of each such deployment with
    the shortage it met.

    Each deployment counts once, however many names it serves. The matting deployment is
    required; its default GPU share gives way to the models (it then runs on the CPU). Raises
    ResourceShortage when the ingress, the matting deployment and the deployments serving the
    operator's own models do not fit.
    """
    groups = {group.name: group for group in deployed_groups(cluster)}
    demands = {name: model_demand(group, has_gpus) for name, group in groups.items()}
    cluster = _matting_beside(
        cluster, [ingress_demand(cluster), *demands.values()], nodes, has_gpus
    )
    matting = matting_demand(cluster, has_gpus)
    builtin = {
        name: demand
        for name, demand in demands.items()
        if all(cluster.uses_builtin_weights(model) for model in groups[name].names)
    }
    configured = [demand for name, demand in demands.items() if name not in builtin]
    required = [ingress_demand(cluster), *([matting] if matting else []), *configured]
    left_out = {
        groups[name].names: shortage for name, shortage in fit(required, builtin, nodes).items()
    }
    undeployed = dict(cluster.undeployed)
    for names in left_out:
        undeployed.update(dict.fromkeys(names, NO_ROOM))
    return cluster.model_copy(update={"undeployed": undeployed}), left_out


def _matting_beside(
    cluster: ClusterArgs,
    others: Sequence[DeploymentDemand],
    nodes: Sequence[Mapping[str, float]],
    has_gpus: bool,
) -> ClusterArgs:
    """`cluster` with the matting deployment on the CPU where its default GPU share is all that
    keeps it from fitting beside the `others` (on one GPU, a model that asks for all of it)."""
    on_gpu = matting_demand(cluster, has_gpus)
    if on_gpu is None or cluster.matting.gpus_per_replica is not None:
        return cluster
    on_cpu = dataclasses.replace(on_gpu, per_replica={**on_gpu.per_replica, "GPU": 0.0})
    if not shortages([*others, on_gpu], nodes) or shortages([*others, on_cpu], nodes):
        return cluster
    log.warning(
        "background matting runs on the CPU: the models take every GPU (--matting-gpus sets it)"
    )
    return cluster.model_copy(
        update={"matting": cluster.matting.model_copy(update={"gpus_per_replica": 0.0})}
    )
