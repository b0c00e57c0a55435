"""A GPT name's multi-image edits run on its `edits_source` pipeline (FLUX.2 klein) while its
generations and one-image edits stay on its own (SD): through the official SDK, in process, with
the real loader observed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest
import torch
import yaml
from diffusers import DiffusionPipeline

from easel.api.state import AppServices
from easel.catalog import Catalog
from easel.engine import loader
from easel.engine.engine import Engine
from easel.settings import Settings
from tests.edit_images import png
from tests.inprocess import InProcessApp, running_app
from tests.sdk_errors import error_body

pytestmark = pytest.mark.anyio

# gpt-image-1 edits several images on klein; gpt-image-1.5 has no edits source.
ROUTED, UNROUTED = "gpt-image-1", "gpt-image-1.5"
EDITS_WORKER = f"{ROUTED} (multi-image edits)"
SIZE = "256x256"


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


async def test_multi_image_edits_run_on_the_edits_source_loaded_on_first_use(
    app: InProcessApp, monkeypatch: pytest.MonkeyPatch
) -> None:
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
