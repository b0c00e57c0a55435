"""Fitting Easel's application to the Ray cluster it is about to be deployed on."""

from __future__ import annotations

import ray

from easel.cluster.app import cluster_has_gpus, ingress_demand, model_demands
from easel.cluster.args import ClusterArgs
from easel.cluster.resources import fit

# What a client asking for a model that was left out reads; the operator's output has the numbers.
NO_ROOM = "it was not deployed: the Ray cluster had no room for it next to the configured models."


def fit_to_cluster(cluster: ClusterArgs) -> tuple[ClusterArgs, dict[str, str]]:
    """`cluster` with the models that keep their built-in weights and find no room left undeployed,
    and those models with the shortage each met.

    Raises ResourceShortage when the ingress and the operator's own models do not fit.
    """
    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    demands = model_demands(cluster, cluster_has_gpus())
    builtin = {m: d for m, d in demands.items() if cluster.uses_builtin_weights(m)}
    configured = [d for m, d in demands.items() if m not in builtin]
    left_out = fit([ingress_demand(cluster), *configured], builtin, nodes)
    undeployed = {**cluster.undeployed, **dict.fromkeys(left_out, NO_ROOM)}
    return cluster.model_copy(update={"undeployed": undeployed}), left_out
