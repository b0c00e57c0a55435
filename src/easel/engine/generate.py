"""One pipeline call for a plan: n images in one batch, returned as uint8 pixels at the requested size."""

from __future__ import annotations

import inspect
import secrets
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DiffusionPipeline

from easel.catalog import GenerationPlan
from easel.engine.resolution import generation_size

MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class GeneratedImage:
    pixels: np.ndarray  # height x width x 3, uint8
    seed: int
    generated_width: int
    generated_height: int


def draw_seed() -> int:
    return secrets.randbelow(MAX_SEED - 16)


def run_plan(pipe: DiffusionPipeline, plan: GenerationPlan, seed: int) -> list[GeneratedImage]:
    """Run the pipeline once for all `plan.n` images; image i is seeded with `seed + i`."""
    width, height = generation_size(pipe, plan.width, plan.height)
    generator_device = "cpu" if pipe.device.type == "mps" else pipe.device
    generators = [
        torch.Generator(device=generator_device).manual_seed(seed + i) for i in range(plan.n)
    ]
    kwargs: dict[str, object] = {
        "prompt": plan.prompt,
        "num_images_per_prompt": plan.n,
        "num_inference_steps": plan.steps,
        "guidance_scale": plan.guidance_scale,
        "width": width,
        "height": height,
        "generator": generators,
        "output_type": "pt",
    }
    if plan.negative_prompt is not None and _accepts(pipe, "negative_prompt"):
        kwargs["negative_prompt"] = plan.negative_prompt
    with torch.inference_mode():
        images = pipe(**kwargs).images
    pixels = to_uint8(images, plan.width, plan.height)
    return [
        GeneratedImage(pixels=p, seed=seed + i, generated_width=width, generated_height=height)
        for i, p in enumerate(pixels)
    ]


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
