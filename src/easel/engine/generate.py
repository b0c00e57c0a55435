"""One pipeline call for a batch of images from one or more requests, returned as uint8 pixels."""

from __future__ import annotations

import inspect
import secrets
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from diffusers import DiffusionPipeline

from easel.engine.edits import edit_arguments, edit_pipeline, keep_unmasked
from easel.engine.faults import check_injected_oom
from easel.engine.pipeline_args import guidance_arguments
from easel.engine.prompt_embeddings import with_long_prompts_encoded
from easel.engine.types import GeneratedImage, highest_first_seed

if TYPE_CHECKING:
    from easel.engine.jobs import BatchKey, Part

# Called after each denoising step with the step number (1-based) and the callback's tensors.
StepHook = Callable[[int, dict[str, Any]], None]


class BatchAbandoned(Exception):
    """Raised from the step callback when every request of the running batch has gone away."""

    def __init__(self, step: int) -> None:
        super().__init__(f"abandoned after step {step}")
        self.step = step


def draw_seed(n: int) -> int:
    """A random first seed for a request of `n` images, low enough that all n seeds are valid."""
    return secrets.randbelow(highest_first_seed(n) + 1)


def run_batch(
    pipe: DiffusionPipeline,
    key: BatchKey,
    parts: Sequence[Part],
    abandoned: Callable[[], bool],
    after_step: StepHook | None = None,
) -> list[list[GeneratedImage]]:
    """Run the pipeline once for every image of `parts`; image i of a job is seeded with seed + i.
    An edit's batch runs the pipeline its key's edit call needs, derived from `pipe`.

    Returns each part's images at its own job's requested size. Raises `BatchAbandoned` at the
    first step boundary after `abandoned()` turns true; calls `after_step(step, tensors)` after
    each step (1-based) with the pipeline's callback tensors (its latents).
    """
    prompts: list[str] = []
    negatives: list[str] = []
    generators: list[torch.Generator] = []
    generator_device = "cpu" if pipe.device.type == "mps" else pipe.device
    for part in parts:
        plan = part.job.plan
        for index in range(part.first, part.first + part.count):
            prompts.append(plan.prompt)
            negatives.append(plan.negative_prompt or "")
            seed = part.job.seed + index
            generators.append(torch.Generator(device=generator_device).manual_seed(seed))
    check_injected_oom(len(prompts), key.width, key.height)
    call = pipe if key.edit is None else edit_pipeline(pipe, key.edit)
    kwargs: dict[str, Any] = {
        "prompt": prompts,
        "num_images_per_prompt": 1,
        "num_inference_steps": key.steps,
        "width": key.width,
        "height": key.height,
        "generator": generators,
        "output_type": "pt",
        **guidance_arguments(pipe, key, negatives),
    }
    if key.edit is not None:
        kwargs.update(edit_arguments(key.edit, key, parts))
    if not _accepts(call, "width"):  # image-to-image pipelines generate at their input's size
        del kwargs["width"], kwargs["height"]
    if _accepts(call, "callback_on_step_end"):
        kwargs["callback_on_step_end"] = _stop_when(abandoned, after_step)
    with torch.inference_mode():
        images = call(**with_long_prompts_encoded(call, kwargs)).images
    results: list[list[GeneratedImage]] = []
    offset = 0
    for part in parts:
        plan = part.job.plan
        pixels = to_uint8(images[offset : offset + part.count], plan.width, plan.height)
        if plan.edit is not None:
            pixels = keep_unmasked(pixels, plan.edit)
        offset += part.count
        results.append(
            [
                GeneratedImage(
                    pixels=p,
                    seed=part.job.seed + part.first + i,
                    generated_width=key.width,
                    generated_height=key.height,
                    batch_images=len(prompts),
                )
                for i, p in enumerate(pixels)
            ]
        )
    return results


def _stop_when(
    abandoned: Callable[[], bool], after_step: StepHook | None
) -> Callable[..., dict[str, Any]]:
    # Raising (rather than setting the pipeline's `_interrupt`) also skips the VAE decode, which
    # the pipelines still run after an interrupted loop: nothing more is spent on the batch.
    def callback(
        _pipe: DiffusionPipeline, step: int, _timestep: object, tensors: dict[str, Any]
    ) -> dict[str, Any]:
        if abandoned():
            raise BatchAbandoned(step + 1)
        if after_step is not None:
            after_step(step + 1, tensors)
        return tensors

    return callback


def to_uint8(images: torch.Tensor, width: int, height: int) -> list[np.ndarray]:
    """Resize to exactly width x height and quantise to 8 bits where the images are (GPU: free)."""
    images = images.float()
    if images.shape[-2:] != (height, width):
        images = torch.nn.functional.interpolate(
            images, size=(height, width), mode="bicubic", antialias=True, align_corners=False
        )
    quantised = (images * 255.0).round_().clamp_(0, 255).to(torch.uint8)
    array = quantised.permute(0, 2, 3, 1).contiguous().cpu().numpy()
    return list(array)


def _accepts(pipe: DiffusionPipeline, name: str) -> bool:
    return name in inspect.signature(pipe.__call__).parameters
