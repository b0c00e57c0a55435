"""In cluster mode the built-in models follow the hardware of the model replicas, the Ray
cluster's GPU nodes, not the machine `easel cluster serve` runs on (often a CPU-only head node).
Without starting Ray: Ray's node entries and what each GPU node's probe read are given."""

from __future__ import annotations

from typing import Any

from easel.catalog.defaults import SD_TURBO, SD_TURBO_TAESD, Z_IMAGE, Z_IMAGE_TURBO, default_models
from easel.catalog.machine import CPU_ONLY, GIB, Machine
from easel.cli.cluster import _application_args
from easel.cluster.replica_machine import gpu_nodes, replica_machine


def node(node_id: str, *, gpus: float = 0.0, alive: bool = True) -> dict[str, Any]:
    """A `ray.nodes()` entry, with the fields read here."""
    return {"NodeID": node_id, "Alive": alive, "Resources": {"CPU": 8.0, "GPU": gpus}}


def test_the_gpu_nodes_are_the_live_nodes_with_gpus() -> None:
    nodes = [node("head"), node("gpu-a", gpus=8.0), node("gpu-gone", gpus=1.0, alive=False)]
    assert gpu_nodes(nodes) == ["gpu-a"]
    assert gpu_nodes([node("head")]) == []


def test_a_cluster_without_gpus_gets_the_cpu_models() -> None:
    machine, why = replica_machine([], {})
    assert machine == CPU_ONLY
    assert "no GPUs" in why
    assert default_models(machine).model is SD_TURBO_TAESD


def test_large_gpus_get_the_large_model_whatever_the_head_node_has() -> None:
    # The head node (CPU only) runs no replica: only the GPU nodes count.
    machine, why = replica_machine(["gpu-a", "gpu-b"], {"gpu-a": 80 * GIB, "gpu-b": 24 * GIB})
    # A replica may land on either node: the smaller GPU decides.
    assert machine == Machine("cuda", 24 * GIB)
    assert "2 GPU nodes" in why and "24.0 GiB" in why
    assert default_models(machine).model is Z_IMAGE


def test_one_small_gpu_node_keeps_the_small_model() -> None:
    machine, _ = replica_machine(["gpu-a", "gpu-b"], {"gpu-a": 80 * GIB, "gpu-b": 16 * GIB})
    assert default_models(machine).model is SD_TURBO_TAESD


def test_a_gpu_node_whose_memory_could_not_be_read_keeps_the_small_model() -> None:
    machine, why = replica_machine(["gpu-a", "gpu-b"], {"gpu-a": 80 * GIB})
    assert machine == Machine("cuda")
    assert "of 1 could not be read" in why
    assert default_models(machine).model is SD_TURBO_TAESD


def test_the_application_args_follow_the_machine_and_keep_the_operators_models() -> None:
    application = _application_args(model=["dall-e-2=/models/mine"])
    on_gpus = application(Machine("cuda", 80 * GIB))
    on_cpus = application(CPU_ONLY)
    assert on_gpus.models["dall-e-3"]["source"] == Z_IMAGE_TURBO
    assert on_cpus.models["dall-e-3"]["source"] == SD_TURBO
    assert on_gpus.models["dall-e-2"]["source"] == on_cpus.models["dall-e-2"]["source"]
    assert on_gpus.models["dall-e-2"]["source"] == "/models/mine"
