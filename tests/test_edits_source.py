"""A GPT name's multi-image edits run on its `edits_source` pipeline (FLUX.2 klein) while its
generations and one-image edits stay on its own (SD): through the official SDK, in process, with
the real loader observed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest
import torch
import yaml
from diffusers import DiffusionPipeline
from prometheus_client import REGISTRY

from easel.api.state import AppServices
from easel.catalog import Catalog, GenerationPlan, ModelSpec
from easel.catalog.edit_rules import EditFields, ImageFile, edit_plan
from easel.engine import loader
from easel.engine.edits import edits_source_for
from easel.engine.engine import Engine
from easel.errors import InvalidRequestError
from easel.settings import Settings
from tests.edit_images import png
from tests.inprocess import InProcessApp, running_app
from tests.sdk_errors import error_body

# gpt-image-1 edits several images on klein; gpt-image-1.5 has no edits source.
ROUTED, UNROUTED = "gpt-image-1", "gpt-image-1.5"
EDITS_WORKER = f"{ROUTED} (multi-image edits)"
SIZE = "256x256"
CPU_CATALOG = Catalog.build()


@pytest.fixture(scope="module")
async def app(
    anyio_backend: str,
    tmp_path_factory: pytest.TempPathFactory,
    tiny_sd: Path,
    tiny_flux2_klein: Path,
) -> AsyncIterator[InProcessApp]:
    directory = tmp_path_factory.mktemp("edits-source")
    small = {"sizes": [SIZE], "default_size": SIZE}
    models: dict[str, dict[str, Any]] = {
        ROUTED: {"source": str(tiny_sd), "edits_source": str(tiny_flux2_klein), **small},
        UNROUTED: {"source": str(tiny_sd), **small},
    }
    config = directory / "easel.yaml"
    config.write_text(yaml.safe_dump({"models": models}))
    built = Catalog.build(config)
    # Only these two names: the built-in others point at hub weights this machine lacks.
    catalog = Catalog([built.get(ROUTED), built.get(UNROUTED)], built.builtin)
    async with running_app(Settings(data_dir=directory / "data"), catalog) as running:
        yield running


def engine_of(app: InProcessApp) -> Engine:
    services: AppServices = app.app.state.services
    assert isinstance(services.engine, Engine)
    return services.engine


def batches(app: InProcessApp, worker: str) -> int:
    count: int = engine_of(app).stats()[worker]["batches"]
    return count


async def readiness(app: InProcessApp) -> dict[str, Any]:
    body: dict[str, Any] = (await app.http.get("/readyz")).json()
    return body


@pytest.mark.anyio
async def test_multi_image_edits_run_on_the_edits_source_loaded_on_first_use(
    app: InProcessApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The name's own pipeline finishes its start-up load first, so that only later loads are seen.
    await asyncio.to_thread(engine_of(app).pipeline, ROUTED)
    loads: list[str] = []
    real = loader.load_pipeline

    def observed(
        source: str, device: torch.device, dtype: torch.dtype, decoder: str | None = None
    ) -> DiffusionPipeline:
        loads.append(source)
        return real(source, device, dtype, decoder)

    # The worker's own reference to the real loader: the one it calls.
    monkeypatch.setattr("easel.engine.worker.load_pipeline", observed)
    sdk = app.sdk()
    sd_batches = batches(app, ROUTED)

    await sdk.images.generate(model=ROUTED, prompt="a red square", size=SIZE, quality="low")
    one = await sdk.images.edit(
        model=ROUTED, image=("a.png", png(64, 64), "image/png"), prompt="make it blue"
    )
    assert one.data and one.data[0].b64_json
    # Both ran on the name's own SD pipeline; klein is neither loaded nor loading.
    assert batches(app, ROUTED) == sd_batches + 2
    assert batches(app, EDITS_WORKER) == 0
    assert loads == []
    ready = await readiness(app)
    assert ready["status"] == "ready"
    assert ready["models"][EDITS_WORKER] == "unloaded"
    assert EDITS_WORKER not in {r["name"] for r in ready["memory"]["resident"]}

    two = await sdk.images.edit(
        model=ROUTED,
        image=[("a.png", png(64, 64), "image/png"), ("b.png", png(48, 64), "image/png")],
        prompt="put them side by side",
        quality="low",
    )
    assert two.data and two.data[0].b64_json
    klein = engine_of(app).pipelines
    (edits_key,) = (key for key, worker in klein.items() if worker.name == EDITS_WORKER)
    assert loads == [edits_key.source]
    assert type(engine_of(app).pipeline(EDITS_WORKER)).__name__ == "Flux2KleinPipeline"
    assert batches(app, EDITS_WORKER) == 1
    assert batches(app, ROUTED) == sd_batches + 2
    ready = await readiness(app)
    assert ready["models"][EDITS_WORKER] == "ready"
    (resident,) = (r for r in ready["memory"]["resident"] if r["name"] == EDITS_WORKER)
    assert resident["models"] == [EDITS_WORKER] and resident["bytes"] > 0


@pytest.mark.anyio
async def test_two_images_without_an_edits_source_get_the_400(app: InProcessApp) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await app.sdk().images.edit(
            model=UNROUTED,
            image=[("a.png", png(64, 64), "image/png"), ("b.png", png(64, 64), "image/png")],
            prompt="put them side by side",
        )
    error = error_body(caught.value)
    assert (error["param"], error["code"]) == ("image", "array_above_max_length")
    assert "takes 1 image" in error["message"]


def gpt_spec(source: Path, edits_source: Path | str) -> ModelSpec:
    update = {
        "source": str(source),
        "edits_source": str(edits_source),
        "sizes": (SIZE,),
        "default_size": SIZE,
    }
    return CPU_CATALOG.get(ROUTED).model_copy(update=update)


def two_image_plan(spec: ModelSpec, count: int = 2) -> GenerationPlan:
    images = [ImageFile(f"image[{index}]", png(64, 64)) for index in range(count)]
    return edit_plan(spec, EditFields(prompt="side by side", size=SIZE), images, None)


def test_the_rules_take_up_to_the_names_limit_where_the_edits_source_takes_references(
    tiny_sd: Path, tiny_flux2_klein: Path
) -> None:
    spec = gpt_spec(tiny_sd, tiny_flux2_klein)
    assert edits_source_for(spec, 16) == str(tiny_flux2_klein)
    assert edits_source_for(spec, 1) is None
    plan = two_image_plan(spec, 16)
    assert plan.edit is not None and len(plan.edit.images) == 16
    with pytest.raises(InvalidRequestError) as caught:
        two_image_plan(spec, 17)
    assert caught.value.code == "array_above_max_length"


def test_an_edits_source_without_references_gets_the_400(tiny_sd: Path, tiny_sdxl: Path) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        two_image_plan(gpt_spec(tiny_sd, tiny_sdxl))
    assert (caught.value.param, caught.value.code) == ("image", "array_above_max_length")


def test_a_hub_edits_source_not_yet_downloaded_takes_several_images(tiny_sd: Path) -> None:
    # Its family is unknown until its first load downloads it: the rules let the edit through to
    # that load, and the engine refuses it then if the pipeline takes no references.
    plan = two_image_plan(gpt_spec(tiny_sd, "easel-tests/never-downloaded"))
    assert plan.edit is not None and len(plan.edit.images) == 2


def test_a_name_that_takes_references_itself_keeps_them(
    tiny_sd: Path, tiny_flux2_klein: Path
) -> None:
    assert edits_source_for(gpt_spec(tiny_flux2_klein, tiny_sd), 2) is None


def test_an_edits_source_that_is_a_names_own_pipeline_shares_its_worker(
    tiny_sd: Path, tiny_flux2_klein: Path
) -> None:
    klein = ModelSpec(name="klein", source=str(tiny_flux2_klein), sizes=(SIZE,), default_size=SIZE)
    routed = gpt_spec(tiny_sd, tiny_flux2_klein)
    engine = Engine(Catalog([routed, klein]), config=Settings().scheduler_config())
    loop = asyncio.new_event_loop()
    try:
        generation = loop.run_until_complete(engine.generate(two_image_plan(routed), seed=3))
    finally:
        loop.run_until_complete(engine.shutdown())
        loop.close()
    assert len(generation.images) == 1
    # Two pipelines, no worker of the edits' own: klein's serves them, under its name.
    assert len(engine.pipelines) == 2
    assert set(engine.states()) == {ROUTED, "klein"}
    assert engine.stats()["klein"]["batches"] == 1
    assert engine.stats()[ROUTED]["batches"] == 0


def test_queue_depth_sums_a_names_requests_in_its_own_and_its_edits_sources_queues(
    tiny_sd: Path, tiny_flux2_klein: Path
) -> None:
    routed = gpt_spec(tiny_sd, tiny_flux2_klein)
    engine = Engine(Catalog([routed]), config=Settings().scheduler_config())
    generation = routed.plan(prompt="a red square", n=2, size=SIZE, quality=None, style=None)

    def queue_depth() -> float | None:
        return REGISTRY.get_sample_value("easel_queue_depth", {"model": ROUTED})

    async def scenario() -> float | None:
        waiting = [
            asyncio.ensure_future(engine.generate(generation, seed=1)),
            asyncio.ensure_future(engine.generate(two_image_plan(routed), seed=2)),
        ]
        await asyncio.sleep(0)  # both queued; neither pipeline has loaded yet
        depth = queue_depth()
        await engine.shutdown()
        await asyncio.gather(*waiting, return_exceptions=True)
        return depth

    loop = asyncio.new_event_loop()
    try:
        # Two generated images in the name's own queue and one edit in its edits source's.
        assert loop.run_until_complete(scenario()) == 3
    finally:
        loop.close()
    assert queue_depth() == 0
