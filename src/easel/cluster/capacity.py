"""Fitting Easel's application to the Ray cluster it is about to be deployed on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import ray

from easel.cluster.app import deployed_groups, ingress_demand
from easel.cluster.args import ClusterArgs
from easel.cluster.model import model_demand
from easel.cluster.resources import fit

# What a client asking for a model that was left out reads; the operator's output has the numbers.
NO_ROOM = "it was not deployed: the Ray cluster had no room for it next to the configured models."


def live_nodes() -> list[Mapping[str, float]]:
    """Each live node's total resources, of the Ray cluster this process is connected to."""
    return [node["Resources"] for node in ray.nodes() if node["Alive"]]


def fit_to_cluster(
    cluster: ClusterArgs, nodes: Sequence[Mapping[str, float]], has_gpus: bool
) -> tuple[ClusterArgs, dict[tuple[str, ...], str]]:
    """`cluster` with the model deployments whose names all keep their built-in weights and find
    no room on `nodes` (`live_nodes`) left undeployed, and the names of each such deployment with
    the shortage it met.

    Each deployment counts once, however many names it serves. Raises ResourceShortage when the
    ingress and the deployments serving the operator's own models do not fit.
    """
    groups = {group.name: group for group in deployed_groups(cluster)}
    demands = {name: model_demand(group, has_gpus) for name, group in groups.items()}
    builtin = {
        name: demand
        for name, demand in demands.items()
        if all(cluster.uses_builtin_weights(model) for model in groups[name].names)
    }
    configured = [demand for name, demand in demands.items() if name not in builtin]
    left_out = {
        groups[name].names: shortage
        for name, shortage in fit([ingress_demand(cluster), *configured], builtin, nodes).items()
    }
    undeployed = dict(cluster.undeployed)
    for names in left_out:
        undeployed.update(dict.fromkeys(names, NO_ROOM))
    return cluster.model_copy(update={"undeployed": undeployed}), left_out
