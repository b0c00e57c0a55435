"""The engine running edits and variations, in-process on real tiny pipelines: image-to-image and
inpainting through pipelines derived from the loaded weights, masks kept, batching, references."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from PIL import Image

from easel.catalog import Catalog, GenerationPlan
from easel.catalog.edit import EditInputs
from easel.engine.derived import derived_pipeline
from easel.engine.engine import Engine
from easel.engine.families import family_of
from easel.engine.faults import OOM_ENV
from easel.engine.types import GeneratedImage
from easel.errors import DeadlineExceededError, InvalidRequestError
from easel.settings import Settings

SIZE = 256
# Catalog names on each tiny family, with few unguided steps so every call is quick; `sd` runs
# more steps so that a strength near 0 runs one step of many.
FAMILY_MODELS = ("sd", "sdxl", "zimage", "klein", "qwen")


@pytest.fixture(scope="module")
def catalog(
    tiny_sd: Path,
    tiny_sdxl: Path,
    tiny_zimage: Path,
    tiny_flux2_klein: Path,
    tiny_qwen_image: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Catalog:
    config = tmp_path_factory.mktemp("edit-engine") / "models.yaml"
    entries = [
        ("sd", tiny_sd, 20),
        ("sdxl", tiny_sdxl, 4),
        ("zimage", tiny_zimage, 4),
        ("klein", tiny_flux2_klein, 1),
        ("qwen", tiny_qwen_image, 4),
        # Hundreds of steps: long enough for a deadline or a client to leave mid-batch.
        ("slow", tiny_sd, 400),
    ]
    config.write_text(
        "models:\n"
        + "".join(
            f"  {name}:\n"
            f"    source: {source}\n"
            "    sizes: [256x256, 512x512]\n"
            "    default_size: 256x256\n"
            f"    qualities: {{standard: {{steps: {steps}, guidance_scale: 0}}}}\n"
            for name, source, steps in entries
        )
    )
    return Catalog.build(config)


@dataclasses.dataclass
class EngineLoop:
    """The module's engine and the one event loop its batchers live on between tests."""

    engine: Engine
    loop: asyncio.AbstractEventLoop

    def run(self, *plans: GenerationPlan, seed: int = 7) -> list[list[GeneratedImage]]:
        """All plans submitted at once (queued before the batcher first runs), all with `seed`."""

        async def together() -> list[list[GeneratedImage]]:
            generations = await asyncio.gather(
                *(self.engine.generate(plan, seed=seed) for plan in plans)
            )
            return [generation.images for generation in generations]

        return self.loop.run_until_complete(together())

    def batch_sizes(self, model: str) -> dict[int, int]:
        sizes: dict[int, int] = self.engine.stats()[model]["batch_sizes"]
        return sizes


@pytest.fixture(scope="module")
def engine(catalog: Catalog) -> Iterator[EngineLoop]:
    loop = asyncio.new_event_loop()
    running = EngineLoop(Engine(catalog, config=Settings().scheduler_config()), loop)
    yield running
    loop.run_until_complete(running.engine.shutdown())
    loop.close()


def picture(seed: int, size: int = SIZE) -> np.ndarray:
    """A smooth random RGB picture (bicubic-enlarged noise), like a photo more than noise is."""
    small = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC))


def top_half_mask(size: int = SIZE) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[: size // 2] = True
    return mask


def edit_plan(
    catalog: Catalog,
    model: str,
    images: list[np.ndarray],
    *,
    mask: np.ndarray | None = None,
    strength: float = 0.6,
    keep_unmasked: bool = False,
    n: int = 1,
    prompt: str = "a cat",
    size: str = f"{SIZE}x{SIZE}",
) -> GenerationPlan:
    """What the HTTP layer hands the engine for an edit (or, with an empty prompt, a variation)."""
    plan = catalog.get(model).plan(prompt="a cat", n=n, size=size, quality=None, style=None)
    edit = EditInputs(tuple(images), mask, strength, keep_unmasked)
    return dataclasses.replace(plan, prompt=prompt, edit=edit)


def generation_plan(catalog: Catalog, model: str, prompt: str = "a cat") -> GenerationPlan:
    return catalog.get(model).plan(
        prompt=prompt, n=1, size=f"{SIZE}x{SIZE}", quality=None, style=None
    )


def pixels(images: list[list[GeneratedImage]]) -> list[np.ndarray]:
    return [image.pixels.astype(np.int16) for request in images for image in request]


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait until `condition()` holds (the scheduler's counters have no event to wait on), for a
    minute at most."""
    async with asyncio.timeout(60):
        while True:
            if condition():
                return
            await asyncio.sleep(0.01)


def mean_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def autoencoded(pipe: DiffusionPipeline, image: np.ndarray) -> np.ndarray:
    """`image` as the pipeline's own autoencoder reproduces it: with random weights that is far
    from the input, and the closest any edit of it can come."""
    tensor = pipe.image_processor.preprocess(Image.fromarray(image))
    with torch.inference_mode():
        latents = pipe.vae.encode(tensor).latent_dist.mode()
        decoded = pipe.vae.decode(latents).sample
    return np.asarray(pipe.image_processor.postprocess(decoded, output_type="np")[0]) * 255.0


@pytest.mark.parametrize("model", ["sd", "sdxl", "zimage", "qwen"])
def test_image_to_image_follows_its_input(catalog: Catalog, engine: EngineLoop, model: str) -> None:
    black = np.zeros((SIZE, SIZE, 3), np.uint8)
    white = np.full((SIZE, SIZE, 3), 255, np.uint8)
    # One call, one seed: the inputs are all that tell the images apart. Random weights carry
    # little of an input through, so the difference is small, but it is the input's alone.
    first, again, other = pixels(
        engine.run(*(edit_plan(catalog, model, [image]) for image in (black, black, white)))
    )
    assert first.shape == (SIZE, SIZE, 3)
    assert mean_difference(first, again) < 0.05
    assert mean_difference(first, other) > 0.3


def test_a_strength_near_zero_stays_near_the_input(catalog: Catalog, engine: EngineLoop) -> None:
    source = picture(1)
    target = autoencoded(engine.engine.pipeline("sd"), source)
    gentle = [edit_plan(catalog, "sd", [source], strength=0.0) for _ in range(2)]
    strong = [edit_plan(catalog, "sd", [source], strength=1.0) for _ in range(2)]
    near = [mean_difference(image, target) for image in pixels(engine.run(*gentle))]
    far = [mean_difference(image, target) for image in pixels(engine.run(*strong))]
    assert max(near) < 0.9 * min(far)


@pytest.mark.parametrize("model", FAMILY_MODELS)
def test_inpainting_keeps_every_pixel_outside_the_mask(
    catalog: Catalog, engine: EngineLoop, model: str
) -> None:
    source = picture(3)
    mask = top_half_mask()
    kept, repainted = pixels(
        engine.run(
            edit_plan(catalog, model, [source], mask=mask, keep_unmasked=True),
            edit_plan(catalog, model, [source], mask=mask),
        )
    )
    assert np.array_equal(kept[~mask], source[~mask])
    assert mean_difference(kept[mask], source[mask]) > 5
    # The pipeline alone does not keep them: the kept pixels are the composite's doing.
    assert not np.array_equal(repainted[~mask], source[~mask])
    # Both ran through the inpaint pipeline in one call (keeping pixels is done afterwards).
    assert np.array_equal(kept[mask], repainted[mask])


def test_kept_pixels_follow_the_requested_size(catalog: Catalog, engine: EngineLoop) -> None:
    # A 512 px original edited at 256 px: the original and its mask are resized to the result.
    source = picture(4, size=512)
    mask = top_half_mask(512)
    [[image]] = engine.run(edit_plan(catalog, "sd", [source], mask=mask, keep_unmasked=True))
    resized = np.asarray(Image.fromarray(source).resize((SIZE, SIZE), Image.Resampling.LANCZOS))
    outside = ~top_half_mask()
    assert image.pixels.shape == (SIZE, SIZE, 3)
    assert np.array_equal(image.pixels[outside], resized[outside])


def test_compatible_edits_share_one_pipeline_call(catalog: Catalog, engine: EngineLoop) -> None:
    before = engine.batch_sizes("sd").get(2, 0)
    results = engine.run(
        edit_plan(catalog, "sd", [picture(5)], prompt="one"),
        edit_plan(catalog, "sd", [picture(6)], prompt="two"),
    )
    assert [image.batch_images for request in results for image in request] == [2, 2]
    assert engine.batch_sizes("sd")[2] == before + 1
    # Each request's image came from its own input, not its neighbour's.
    alone = pixels(engine.run(edit_plan(catalog, "sd", [picture(6)], prompt="two")))
    first, second = pixels(results)
    assert mean_difference(second, alone[0]) < mean_difference(first, alone[0])


def test_masked_edits_batch_with_their_own_masks(catalog: Catalog, engine: EngineLoop) -> None:
    source = picture(7)
    mask = top_half_mask()
    results = engine.run(
        edit_plan(catalog, "zimage", [source], mask=mask, keep_unmasked=True),
        edit_plan(catalog, "zimage", [source], mask=~mask, keep_unmasked=True),
    )
    assert [image.batch_images for request in results for image in request] == [2, 2]
    top, bottom = pixels(results)
    assert np.array_equal(top[~mask], source[~mask])
    assert np.array_equal(bottom[mask], source[mask])


@pytest.mark.parametrize(
    "other",
    [
        pytest.param({}, id="a generation"),
        pytest.param({"strength": 0.3}, id="another strength"),
        pytest.param({"mask": top_half_mask()}, id="an inpaint"),
    ],
)
def test_edits_never_share_a_call_with_other_work(
    catalog: Catalog, engine: EngineLoop, other: dict[str, Any]
) -> None:
    edit = edit_plan(catalog, "sd", [picture(8)])
    company = (
        generation_plan(catalog, "sd")
        if not other
        else edit_plan(catalog, "sd", [picture(9)], **other)
    )
    results = engine.run(edit, company)
    assert [image.batch_images for request in results for image in request] == [1, 1]


def test_variations_are_one_call_with_a_seed_each(catalog: Catalog, engine: EngineLoop) -> None:
    [images] = engine.run(edit_plan(catalog, "sd", [picture(10)], n=3, prompt=""), seed=40)
    assert [image.seed for image in images] == [40, 41, 42]
    assert {image.batch_images for image in images} == {3}
    first, second, third = (image.pixels.astype(np.int16) for image in images)
    assert min(mean_difference(first, second), mean_difference(second, third)) > 1


def test_an_edit_split_by_out_of_memory_keeps_its_inputs(
    catalog: Catalog, engine: EngineLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = edit_plan(catalog, "sd", [picture(11)], n=2, prompt="")
    whole = pixels(engine.run(plan))
    # A CPU cannot run out of accelerator memory: injected for calls of two images or more.
    monkeypatch.setenv(OOM_ENV, str(2 * SIZE * SIZE))
    halves = engine.run(plan)
    assert {image.batch_images for image in halves[0]} == {1}
    for together, alone in zip(whole, pixels(halves), strict=True):
        assert mean_difference(together, alone) < 1


def test_an_edit_past_its_deadline_stops_mid_batch(catalog: Catalog, engine: EngineLoop) -> None:
    # The deadline cancels the request as a client that goes away does (test_scheduler.py shows
    # both for generations): its running batch stops at the next step.
    plan = edit_plan(catalog, "slow", [picture(21)], strength=1.0)
    # `slow` shares `sd`'s weights, so its worker and counters too: count from here.
    stats = engine.engine.workers["slow"].scheduler.stats
    engine.engine.pipeline("slow")  # loaded: the deadline is spent on the batch, not the load
    abandoned, batches = stats.abandoned_batches, stats.batches

    async def past_the_deadline() -> None:
        with pytest.raises(DeadlineExceededError):
            await engine.engine.generate(plan, seed=1, deadline_seconds=0.5)
        await eventually(lambda: stats.abandoned_batches == abandoned + 1)

    engine.loop.run_until_complete(past_the_deadline())
    assert stats.batches == batches  # it never ran its 400 steps to the end


@pytest.mark.parametrize("model", FAMILY_MODELS)
def test_derived_pipelines_share_the_loaded_weights(engine: EngineLoop, model: str) -> None:
    base = engine.engine.pipeline(model)
    family = family_of(type(base).__name__)
    assert family is not None
    weights = {
        parameter.data_ptr()
        for component in base.components.values()
        if isinstance(component, torch.nn.Module)
        for parameter in component.parameters()
    }
    for class_name in filter(None, (family.img2img, family.inpaint)):
        derived = derived_pipeline(base, class_name)
        assert type(derived).__name__ == class_name
        assert derived_pipeline(base, class_name) is derived
        for name, component in derived.components.items():
            if isinstance(component, torch.nn.Module):
                assert component is base.components[name]
                assert {p.data_ptr() for p in component.parameters()} <= weights
                assert {p.dtype for p in component.parameters()} == {base.dtype}


def test_derived_pipelines_keep_the_weights_dtype(tiny_sd: Path) -> None:
    # Served on an accelerator, weights are half precision: deriving must not cast the shared
    # modules (in place, under the text-to-image pipeline too) to diffusers' float32 default.
    base = DiffusionPipeline.from_pretrained(tiny_sd, dtype=torch.bfloat16)
    derived_pipeline(base, "StableDiffusionInpaintPipeline")
    assert {p.dtype for p in base.unet.parameters()} == {torch.bfloat16}


def test_klein_takes_several_references(catalog: Catalog, engine: EngineLoop) -> None:
    plans = [
        edit_plan(catalog, "klein", [picture(12, size=64), picture(13, size=64)]),
        edit_plan(catalog, "klein", [picture(12, size=64), picture(14, size=32)]),
    ]
    results = engine.run(*plans)
    # References are per call: the two requests never share one.
    assert [image.batch_images for request in results for image in request] == [1, 1]
    first, second = pixels(results)
    assert first.shape == second.shape == (SIZE, SIZE, 3)
    # Alone, with the same seed and references, the same image comes back; a different second
    # reference changes it (a little: random weights carry little of a reference through).
    assert np.array_equal(pixels(engine.run(plans[0]))[0], first)
    assert not np.array_equal(first, second)


def test_klein_inpaints_with_references(catalog: Catalog, engine: EngineLoop) -> None:
    source = picture(17)
    mask = top_half_mask()
    plans = [
        edit_plan(catalog, "klein", [source, reference], mask=mask, keep_unmasked=True, n=n)
        for reference, n in ((picture(18, size=64), 2), (picture(19, size=64), 1))
    ]
    results = engine.run(*plans)
    # The pipeline would pair two references with two images one to one: each call makes one.
    assert {image.batch_images for request in results for image in request} == {1}
    first, _, other = pixels(results)
    assert np.array_equal(first[~mask], source[~mask])
    # Random weights carry little of a reference through, but something.
    assert not np.array_equal(first[mask], other[mask])


@pytest.mark.parametrize(
    ("model", "mask"),
    [
        pytest.param("sd", None, id="sd, no mask"),
        pytest.param("zimage", top_half_mask(), id="zimage, a mask"),
    ],
)
def test_too_many_images_is_a_400_and_the_engine_serves_on(
    catalog: Catalog, engine: EngineLoop, model: str, mask: np.ndarray | None
) -> None:
    plan = edit_plan(catalog, model, [picture(15), picture(16)], mask=mask)

    async def refused_then_served() -> list[GeneratedImage]:
        refused = asyncio.create_task(engine.engine.generate(plan, seed=1))
        served = asyncio.create_task(
            engine.engine.generate(generation_plan(catalog, model), seed=1)
        )
        with pytest.raises(InvalidRequestError) as caught:
            await refused
        assert caught.value.status_code == 400
        assert caught.value.param == "image"
        assert caught.value.code == "array_above_max_length"
        assert "maximum length 1" in str(caught.value)
        return (await served).images

    assert len(engine.loop.run_until_complete(refused_then_served())) == 1


def test_a_reference_too_elongated_for_klein_is_a_400(catalog: Catalog, engine: EngineLoop) -> None:
    sliver = np.zeros((64, 1024, 3), np.uint8)
    plan = edit_plan(catalog, "klein", [picture(20, size=64), sliver])
    with pytest.raises(InvalidRequestError) as caught:
        engine.run(plan)
    assert caught.value.status_code == 400
    assert "1024x64" in str(caught.value)
