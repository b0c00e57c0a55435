"""Fitting `easel cluster serve`'s deployments to the cluster, without starting Ray: one deployment
per shared pipeline, the resource check, the models left undeployed and their 503s, and how a
stalled rollout is reported."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from ray.serve._private.common import DeploymentStatus, DeploymentStatusTrigger
from ray.serve.schema import (
    ApplicationStatus,
    ApplicationStatusOverview,
    DeploymentStatusOverview,
)

from easel.catalog import Catalog, GenerationPlan
from easel.catalog.catalog import CatalogConfigError
from easel.catalog.defaults import DEFAULT_MODELS
from easel.cluster.app import build_app, deployed_groups, ingress_demand, model_demands
from easel.cluster.args import ClusterArgs, IngressOptions, ServerOptions
from easel.cluster.capacity import NO_ROOM, fit_to_cluster
from easel.cluster.engine_proxy import DeploymentEngine
from easel.cluster.groups import deployment_name
from easel.cluster.resources import DeploymentDemand, ResourceShortage, fit
from easel.cluster.rollout import describe
from easel.engine.loader import PipelineKey
from easel.engine.types import ModelState
from easel.errors import ServiceUnavailableError

GIB = 2**30
TWO_CORES = [{"CPU": 2.0, "memory": 8.0 * GIB}]


def cpus(name: str, replicas: int, per_replica: float) -> DeploymentDemand:
    return DeploymentDemand(name, replicas, {"CPU": per_replica, "GPU": 0.0})


def test_deployments_that_overdraw_the_cpus_are_refused_with_the_numbers() -> None:
    # The reported case: two dall-e-2 replicas at 0.5 CPU, dall-e-3 at 1 CPU, the ingress at 0.5,
    # on two cores.
    required = [
        cpus("ingress", 1, 0.5),
        cpus("model:dall-e-2", 2, 0.5),
        cpus("model:dall-e-3", 1, 1.0),
    ]
    with pytest.raises(ResourceShortage) as refused:
        fit(required, {}, TWO_CORES)
    assert str(refused.value) == (
        "the deployments ask for more than the Ray cluster has:\n"
        "  CPU: 2.5 asked (ingress 1 x 0.5 + model:dall-e-2 2 x 0.5 + model:dall-e-3 1 x 1), "
        "the cluster has 2"
    )


def test_gpus_memory_and_a_replica_larger_than_any_node_are_named() -> None:
    nodes = [{"CPU": 4.0, "GPU": 1.0, "memory": 8.0 * GIB}, {"CPU": 4.0, "memory": 8.0 * GIB}]
    required = [
        DeploymentDemand("model:flux", 2, {"CPU": 1.0, "GPU": 1.0, "memory": 12.0 * GIB}),
        cpus("model:big", 1, 6.0),
    ]
    with pytest.raises(ResourceShortage) as refused:
        fit(required, {}, nodes)
    problems = str(refused.value).splitlines()[1:]
    assert [line.strip() for line in problems] == [
        "GPU: 2 asked (model:flux 2 x 1), the cluster has 1",
        "memory: 24 GiB asked (model:flux 2 x 12 GiB), the cluster has 16 GiB",
        "model:flux: no node can hold one replica (1 CPU, 1 GPU, 12 GiB memory)",
        "model:big: no node can hold one replica (6 CPU)",
    ]


def test_fractions_that_add_up_exactly_fit() -> None:
    assert fit([cpus("a", 3, 0.1), cpus("b", 7, 0.1)], {}, [{"CPU": 1.0}]) == {}


def test_builtin_models_without_room_are_left_out_instead_of_blocking() -> None:
    required = [cpus("ingress", 1, 0.5), cpus("model:dall-e-2", 2, 0.5)]
    optional = {"dall-e-3": cpus("model:dall-e-3", 1, 1.0), "tiny": cpus("model:tiny", 1, 0.5)}
    left_out = fit(required, optional, TWO_CORES)
    # dall-e-3 does not fit next to what is required; the smaller one after it still does.
    assert left_out == {
        "dall-e-3": "CPU: 2.5 asked (ingress 1 x 0.5 + model:dall-e-2 2 x 0.5 + "
        "model:dall-e-3 1 x 1), the cluster has 2"
    }


def _args(tmp_path: Path, *overrides: str) -> ClusterArgs:
    return ClusterArgs.build(
        Catalog.build(None, overrides),
        ServerOptions(data_dir=tmp_path),
        {"cpus_per_replica": 0.5},
        IngressOptions(replicas=2, cpus_per_replica=0.25),
    )


BUILTIN_DEPLOYMENT = deployment_name(PipelineKey.of("stabilityai/sd-turbo", "madebyollin/taesd"))


def test_names_that_share_a_pipeline_share_one_deployment(tmp_path: Path) -> None:
    args = _args(tmp_path, "dall-e-2=/models/turbo", "flux=/models/flux", "dall-e-3=/models/flux")
    groups = {group.name: group.names for group in deployed_groups(args)}
    untouched = tuple(m for m in DEFAULT_MODELS if m not in ("dall-e-2", "dall-e-3"))
    assert groups == {
        deployment_name(PipelineKey.of("/models/turbo")): ("dall-e-2",),
        BUILTIN_DEPLOYMENT: untouched,
        deployment_name(PipelineKey.of("/models/flux")): ("dall-e-3", "flux"),
    }
    # Readable and stable: the source's name and a hash of where it is, never Ray's '#'.
    assert BUILTIN_DEPLOYMENT.startswith("model:sd-turbo-")
    assert deployment_name(PipelineKey.of("/models/flux")).startswith("model:flux-")
    assert deployment_name(PipelineKey.of("/a/flux")) != deployment_name(PipelineKey.of("/b/flux"))
    assert deployment_name(PipelineKey.of("/a/x#1")).startswith("model:x_1-")


def test_names_of_one_pipeline_with_different_deployments_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "catalog.yaml"
    two_replicas = {"min_replicas": 2, "max_replicas": 2}
    models = {
        "dall-e-2": {"source": "/models/turbo", "deployment": two_replicas},
        "gpt-image-1": {"source": "/models/turbo"},
    }
    config.write_text(yaml.safe_dump({"models": models}))
    with pytest.raises(CatalogConfigError) as refused:
        ClusterArgs.build(
            Catalog.build(config), ServerOptions(data_dir=tmp_path), {}, IngressOptions()
        )
    assert str(refused.value) == (
        "models dall-e-2, gpt-image-1 share the pipeline /models/turbo, so one Ray deployment, "
        "but their `deployment` blocks differ: min_replicas (dall-e-2: 2, gpt-image-1: 1); "
        "max_replicas (dall-e-2: 2, gpt-image-1: 1). Give them the same block, or set it for "
        "every model with --min-replicas, --max-replicas."
    )


def test_the_capacity_check_counts_each_deployment_once(tmp_path: Path) -> None:
    # Seven built-in names on one pipeline: one replica of 0.5 CPU, not seven.
    args = _args(tmp_path)
    assert fit_to_cluster(args, [{"CPU": 1.25}], has_gpus=False) == (args, {})
    fitted, left_out = fit_to_cluster(args, [{"CPU": 1.0}], has_gpus=False)
    assert left_out == {
        tuple(DEFAULT_MODELS): "CPU: 1.25 asked (ingress 2 x 0.25 + matting 1 x 0.25 + "
        f"{BUILTIN_DEPLOYMENT} 1 x 0.5), the cluster has 1"
    }
    assert fitted.undeployed == dict.fromkeys(DEFAULT_MODELS, NO_ROOM)


def test_demands_follow_the_catalog_and_only_untouched_builtins_are_optional(
    tmp_path: Path,
) -> None:
    args = _args(tmp_path, "dall-e-2=/models/turbo", "flux=/models/flux")
    untouched = [m for m in DEFAULT_MODELS if m != "dall-e-2"]
    assert [m for m in args.models if args.uses_builtin_weights(m)] == untouched
    assert ingress_demand(args) == DeploymentDemand("ingress", 2, {"CPU": 0.25})
    demands = model_demands(args, has_gpus=True)
    # A model without a GPU count gets one GPU when the cluster has GPUs.
    flux = deployment_name(PipelineKey.of("/models/flux"))
    assert demands[flux] == DeploymentDemand(flux, 1, {"CPU": 0.5, "GPU": 1.0})


def test_an_undeployed_model_gets_no_deployment(tmp_path: Path) -> None:
    args = _args(tmp_path).model_copy(update={"undeployed": {"dall-e-3": NO_ROOM}})
    app = build_app(args.model_dump(mode="json"))
    # Ray annotates init_args as a 1-tuple; the ingress is bound with (args, models, matting).
    models = cast(tuple[Any, ...], app._bound_deployment.init_args)[1]
    deployed = tuple(m for m in DEFAULT_MODELS if m != "dall-e-3")
    assert tuple(models) == deployed
    # Every name is routed to the one deployment of their shared pipeline, which serves them all.
    (group,) = {id(application): application for application in models.values()}.values()
    assert group._bound_deployment.name == BUILTIN_DEPLOYMENT
    assert group._bound_deployment.init_args[0].names == deployed
    assert model_demands(args, has_gpus=False).keys() == {BUILTIN_DEPLOYMENT}


def test_an_undeployed_model_answers_503_model_unavailable() -> None:
    engine = DeploymentEngine({}, {"dall-e-3": NO_ROOM})
    assert engine.states() == {"dall-e-3": ModelState.FAILED}
    with pytest.raises(ServiceUnavailableError) as unavailable:
        asyncio.run(engine.generate(_plan("dall-e-3")))
    error = unavailable.value
    assert (error.status_code, error.code) == (503, "model_unavailable")
    assert error.message == f"The model `dall-e-3` is not available: {NO_ROOM}"
    assert error.headers == {"x-should-retry": "false"}


def _plan(model: str) -> GenerationPlan:
    return GenerationPlan(
        model=model,
        prompt="a cat",
        negative_prompt=None,
        n=1,
        size="64x64",
        width=64,
        height=64,
        steps=1,
        guidance_scale=0.0,
        revised_prompt=None,
        user_prompt="a cat",
        quality="standard",
        style=None,
    )


def test_a_stalled_rollout_names_the_deployments_that_are_not_running() -> None:
    waiting = (
        "Deployment 'model:dall-e-3' in application 'easel' has 1 replicas that have taken more "
        "than 30s to be scheduled."
    )
    overview = ApplicationStatusOverview(
        status=ApplicationStatus.DEPLOYING,
        message="",
        last_deployed_time_s=0.0,
        deployments={
            "ingress": _deployment(DeploymentStatus.HEALTHY, ""),
            "model:dall-e-3": _deployment(DeploymentStatus.UPDATING, waiting),
        },
    )
    assert describe(overview, "was not running after 120 s") == (
        "the application was not running after 120 s (DEPLOYING)\n"
        f"  model:dall-e-3 UPDATING: {waiting}"
    )


def _deployment(status: DeploymentStatus, message: str) -> DeploymentStatusOverview:
    return DeploymentStatusOverview(
        status=status,
        status_trigger=DeploymentStatusTrigger.UNSPECIFIED,
        replica_states={},
        message=message,
    )
