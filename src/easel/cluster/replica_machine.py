"""The hardware Easel's model replicas will run on, which the built-in models follow: the Ray
cluster's GPU nodes, not the machine `easel cluster serve` runs on (often a CPU-only head node).

Ray reports how many GPUs each node has but not their memory, which decides the built-in model
(`catalog.defaults.choose_builtin_model`): a task on each GPU node reads it there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from easel.catalog.machine import CPU_ONLY, Machine, gib
from easel.engine.device import describe_machine

# How long the probes may wait for a free GPU (a busy cluster's GPUs may all be taken).
PROBE_TIMEOUT_SECONDS = 60.0


def gpu_nodes(nodes: Sequence[Mapping[str, Any]]) -> list[str]:
    """The ids of the live nodes with GPUs, in `ray.nodes()` entries."""
    return [node["NodeID"] for node in nodes if node["Alive"] and node["Resources"].get("GPU", 0)]


def replica_machine(
    gpu_node_ids: Sequence[str], memory_by_node: Mapping[str, int | None]
) -> tuple[Machine, str]:
    """The machine the built-in models are chosen for, and why: CPU only on a cluster without
    GPUs, else a CUDA GPU with the smallest memory of any GPU node (a replica may land on any),
    unknown when a node's could not be read."""
    if not gpu_node_ids:
        return CPU_ONLY, "the Ray cluster has no GPUs: the model replicas run on CPUs"
    known = [memory for node in gpu_node_ids if (memory := memory_by_node.get(node)) is not None]
    nodes = f"{len(gpu_node_ids)} GPU node{'s' if len(gpu_node_ids) > 1 else ''}"
    if len(known) < len(gpu_node_ids):
        unread = len(gpu_node_ids) - len(known)
        return Machine("cuda"), (
            f"the model replicas run on the Ray cluster's {nodes}; the GPU memory of {unread} "
            f"could not be read within {PROBE_TIMEOUT_SECONDS:g} s (no GPU free there)"
        )
    smallest = min(known)
    return Machine("cuda", smallest), (
        f"the model replicas run on the Ray cluster's {nodes}, "
        f"the smallest GPU with {gib(smallest)}"
    )


def cluster_replica_machine() -> tuple[Machine, str]:
    """`replica_machine` for the connected Ray cluster, its GPU nodes probed at once."""
    node_ids = gpu_nodes(ray.nodes())
    if not node_ids:
        return replica_machine(node_ids, {})
    probe = ray.remote(_gpu_memory)
    pending = {
        node: probe.options(
            # A GPU as a replica asks for one: what it reads is what a replica would see.
            num_gpus=1,
            num_cpus=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
        ).remote()
        for node in node_ids
    }
    refs = list(pending.values())
    done, late = ray.wait(refs, num_returns=len(refs), timeout=PROBE_TIMEOUT_SECONDS)
    for ref in late:
        ray.cancel(ref, force=True)
    finished = set(done)
    memory_by_node = {node: ray.get(ref) for node, ref in pending.items() if ref in finished}
    return replica_machine(node_ids, memory_by_node)


def _gpu_memory() -> int | None:
    """On a GPU node: the memory of the GPU this task was given."""
    return describe_machine().memory_bytes
