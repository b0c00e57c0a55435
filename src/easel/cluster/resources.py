"""Whether Easel's deployments fit the Ray cluster, decided before deploying: Ray itself waits for
room forever and says so only in its own logs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Ray counts resources in units of 1/10,000; sums of fractions must not fail on rounding.
TOLERANCE = 1e-6
# Ray's resource names and the `ray_actor_options` keys that ask for them.
ACTOR_OPTIONS = {"CPU": "num_cpus", "GPU": "num_gpus", "memory": "memory"}


@dataclass(frozen=True)
class DeploymentDemand:
    """What a deployment asks of the cluster when Ray starts it."""

    name: str  # the Ray Serve deployment's name, as `serve status` shows it
    replicas: int  # replicas Ray starts with
    per_replica: Mapping[str, float]  # Ray resource name ("CPU", "GPU", "memory") -> amount

    def actor_options(self) -> dict[str, float]:
        return {ACTOR_OPTIONS[resource]: amount for resource, amount in self.per_replica.items()}

    def total(self, resource: str) -> float:
        return self.replicas * self.per_replica.get(resource, 0.0)


class ResourceShortage(ValueError):
    """The deployments Easel needs ask for more than the cluster has."""


def fit(
    required: Sequence[DeploymentDemand],
    optional: Mapping[str, DeploymentDemand],
    nodes: Sequence[Mapping[str, float]],
) -> dict[str, str]:
    """The keys of `optional` that find no room next to `required`, each with why.

    Raises ResourceShortage naming the numbers when `required` alone does not fit. `nodes` holds
    each live node's total resources. A replica must fit on one node and the sums on the cluster;
    a packing that passes both can still be impossible, which the deployment's own wait catches.
    """
    problems = shortages(required, nodes)
    if problems:
        raise ResourceShortage(
            "the deployments ask for more than the Ray cluster has:\n  " + "\n  ".join(problems)
        )
    placed = list(required)
    left_out = {}
    for key, demand in optional.items():
        problems = shortages([*placed, demand], nodes)
        if problems:
            left_out[key] = "; ".join(problems)
        else:
            placed.append(demand)
    return left_out


def shortages(
    demands: Sequence[DeploymentDemand], nodes: Sequence[Mapping[str, float]]
) -> list[str]:
    """One line per resource the demands overdraw and per replica no single node can hold."""
    problems = []
    resources = sorted({resource for demand in demands for resource in demand.per_replica})
    for resource in resources:
        asked = sum(demand.total(resource) for demand in demands)
        has = sum(node.get(resource, 0.0) for node in nodes)
        if asked > has + TOLERANCE:
            parts = " + ".join(
                f"{d.name} {d.replicas} x {amount(resource, d.per_replica[resource])}"
                for d in demands
                if d.total(resource) > 0
            )
            problems.append(
                f"{resource}: {amount(resource, asked)} asked ({parts}), "
                f"the cluster has {amount(resource, has)}"
            )
    for demand in demands:
        if demand.replicas > 0 and not any(_holds(node, demand.per_replica) for node in nodes):
            asks = ", ".join(amount(r, a) + f" {r}" for r, a in demand.per_replica.items() if a)
            problems.append(f"{demand.name}: no node can hold one replica ({asks})")
    return problems


def amount(resource: str, value: float) -> str:
    if resource == "memory":  # Ray counts memory in bytes
        return f"{value / 2**30:.3g} GiB"
    return f"{value:g}"


def _holds(node: Mapping[str, float], per_replica: Mapping[str, float]) -> bool:
    return all(node.get(r, 0.0) + TOLERANCE >= a for r, a in per_replica.items() if a > 0)
