"""The cluster's background-matting deployment without starting Ray: what it asks of the cluster,
how the capacity check counts it, and Ray's failures of its calls as clients read them."""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any, cast

import pytest
import torch
from ray.exceptions import RayTaskError
from ray.serve._private.common import DeploymentID
from ray.serve.exceptions import DeploymentUnavailableError, ReplicaUnavailableError

from easel.catalog import Catalog
from easel.catalog.defaults import DEFAULT_MODELS
from easel.cluster.app import build_app, deployed_groups
from easel.cluster.args import ClusterArgs, IngressOptions, MattingOptions, ServerOptions
from easel.cluster.capacity import fit_to_cluster
from easel.cluster.engine_proxy import across_ray
from easel.cluster.matting import MATTING_NAME, matting_demand
from easel.cluster.resources import DeploymentDemand, ResourceShortage
from easel.engine.matting import MattingModel
from easel.errors import ServiceUnavailableError


def _args(tmp_path: Path, matting: MattingOptions | None = None) -> ClusterArgs:
    """The built-in catalog, its one deployment at 0.5 CPU, the ingress at 0.25."""
    return ClusterArgs.build(
        Catalog.build(None),
        ServerOptions(data_dir=tmp_path),
        {"cpus_per_replica": 0.5},
        IngressOptions(cpus_per_replica=0.25),
        matting,
    )


def test_the_matting_deployment_takes_a_share_of_a_gpu_when_the_cluster_has_gpus(
    tmp_path: Path,
) -> None:
    args = _args(tmp_path)
    assert matting_demand(args, cluster_has_gpus=True) == DeploymentDemand(
        MATTING_NAME, 1, {"CPU": 0.25, "GPU": 0.25}
    )
    assert matting_demand(args, cluster_has_gpus=False) == DeploymentDemand(
        MATTING_NAME, 1, {"CPU": 0.25, "GPU": 0.0}
    )
    sized = _args(tmp_path, MattingOptions(replicas=2, gpus_per_replica=0.5))
    assert matting_demand(sized, cluster_has_gpus=True) == DeploymentDemand(
        MATTING_NAME, 2, {"CPU": 0.25, "GPU": 0.5}
    )


def test_no_matting_deployment_while_transparent_backgrounds_are_off(tmp_path: Path) -> None:
    args = ClusterArgs.build(
        Catalog.build(None),
        ServerOptions(data_dir=tmp_path, matting_model=""),
        {"cpus_per_replica": 0.5},
        IngressOptions(cpus_per_replica=0.25),
    )
    assert matting_demand(args, cluster_has_gpus=True) is None
    assert fit_to_cluster(args, [{"CPU": 0.75, "GPU": 1.0}], has_gpus=True) == (args, {})


def test_the_capacity_check_counts_the_matting_deployment(tmp_path: Path) -> None:
    args = _args(tmp_path, MattingOptions(gpus_per_replica=0))
    assert fit_to_cluster(args, [{"CPU": 1.0}], has_gpus=False) == (args, {})
    _, left_out = fit_to_cluster(args, [{"CPU": 0.75}], has_gpus=False)
    assert left_out == {
        tuple(DEFAULT_MODELS): "CPU: 1 asked (ingress 1 x 0.25 + matting 1 x 0.25 + "
        f"{_builtin_deployment(args)} 1 x 0.5), the cluster has 0.75"
    }
    with pytest.raises(ResourceShortage, match=re.escape("matting 1 x 0.25")):
        fit_to_cluster(args, [{"CPU": 0.25}], has_gpus=False)


def test_on_a_gpu_the_models_take_whole_the_default_matting_share_gives_way(
    tmp_path: Path,
) -> None:
    args = _args(tmp_path)
    fitted, left_out = fit_to_cluster(args, [{"CPU": 2.0, "GPU": 1.0}], has_gpus=True)
    # The built-in model keeps its GPU; matting runs on the CPU.
    assert left_out == {}
    assert fitted.matting.gpus_per_replica == 0.0
    assert matting_demand(fitted, cluster_has_gpus=True) == DeploymentDemand(
        MATTING_NAME, 1, {"CPU": 0.25, "GPU": 0.0}
    )
    # With room for both, it keeps its share; a share the operator set is never changed.
    roomy, _ = fit_to_cluster(args, [{"CPU": 2.0, "GPU": 2.0}], has_gpus=True)
    assert roomy.matting.gpus_per_replica is None
    chosen = _args(tmp_path, MattingOptions(gpus_per_replica=0.25))
    kept, left_out = fit_to_cluster(chosen, [{"CPU": 2.0, "GPU": 1.0}], has_gpus=True)
    assert kept.matting.gpus_per_replica == 0.25
    assert list(left_out) == [tuple(DEFAULT_MODELS)]


@pytest.mark.anyio
async def test_a_matting_model_that_cannot_load_answers_503_through_ray(tmp_path: Path) -> None:
    """The replica's own refusal, wrapped and pickled as Ray sends it, reaches the client as is."""
    model = MattingModel(str(tmp_path / "no-such-model"), torch.device("cpu"))
    with pytest.raises(ServiceUnavailableError) as refused:
        await model.ready()
    crossed = pickle.loads(pickle.dumps(RayTaskError("ready", "traceback", refused.value)))

    async def attempt() -> None:
        raise crossed

    with pytest.raises(ServiceUnavailableError) as unavailable:
        await across_ray(MattingModel.name, attempt)
    assert (unavailable.value.status_code, unavailable.value.code) == (503, "model_unavailable")
    assert int(unavailable.value.headers["Retry-After"]) > 0


@pytest.mark.anyio
async def test_a_failed_or_lost_matting_deployment_answers_503_with_retry_after() -> None:
    async def no_replicas() -> None:
        raise DeploymentUnavailableError(DeploymentID(name=MATTING_NAME, app_name="easel"))

    with pytest.raises(ServiceUnavailableError) as failed:
        await across_ray(MattingModel.name, no_replicas)
    assert failed.value.code == "model_unavailable"
    assert failed.value.headers["Retry-After"] == "30"

    calls = 0

    async def replica_lost() -> None:
        nonlocal calls
        calls += 1
        raise ReplicaUnavailableError("matting#abc")

    with pytest.raises(ServiceUnavailableError) as lost:
        await across_ray(MattingModel.name, replica_lost)
    assert calls == 2  # tried once more on another replica
    assert lost.value.code == "replica_unavailable"
    assert lost.value.headers["Retry-After"] == "1"


def test_the_ingress_is_given_the_matting_deployment_while_matting_is_on(tmp_path: Path) -> None:
    ingress = build_app(_args(tmp_path).model_dump(mode="json"))._bound_deployment
    # Ray annotates init_args as a 1-tuple; the ingress is bound with (args, models, matting).
    matting = cast(tuple[Any, ...], ingress.init_args)[2]
    assert matting._bound_deployment.name == MATTING_NAME
    off = _args(tmp_path).model_copy(
        update={"server": ServerOptions(data_dir=tmp_path, matting_model="")}
    )
    ingress_off = build_app(off.model_dump(mode="json"))._bound_deployment
    assert cast(tuple[Any, ...], ingress_off.init_args)[2] is None


def _builtin_deployment(args: ClusterArgs) -> str:
    (group,) = deployed_groups(args)
    return group.name
