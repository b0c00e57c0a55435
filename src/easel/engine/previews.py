"""Partial images of requests being denoised: their current latents projected to RGB.

The latents a step leaves (spatial, or packed into a sequence of 2x2 patches) are first turned
into what the pipeline's autoencoder decodes, as the pipeline itself does before decoding
(`latent_layouts`). A linear projection from those channels to RGB makes the preview: fitted once
per loaded pipeline by encoding a few smooth synthetic images with the pipeline's own autoencoder,
decoding them again, and solving least squares against the decoded images shrunk to latent
resolution. It costs a reshape and one small matrix product per preview, follows the decoder for
any weights (random test weights too), and needs no extra model. Pipelines whose latent layout or
autoencoder `latent_layouts` does not know get no previews.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline

from easel.engine.generate import StepHook, to_uint8
from easel.engine.jobs import BatchKey, Job, Part
from easel.engine.latent_layouts import decoded, decoder_input, encoded
from easel.engine.types import PreviewRequest

log = logging.getLogger(__name__)

# The fit's sample: this many images, each this many latent pixels on a side, made of random colours
# on a coarse grid blended smoothly, as the broad areas of a half-denoised image are.
_FIT_IMAGES = 8
_FIT_LATENT_SIDE = 8
_FIT_GRID = 4


@dataclass(frozen=True)
class LatentProjection:
    """RGB (0..1) = latents . weight + bias, per latent pixel of the decoder's input."""

    weight: torch.Tensor  # channels x 3
    bias: torch.Tensor  # 3

    @property
    def channels(self) -> int:
        return int(self.weight.shape[0])

    def rgb(self, latents: torch.Tensor) -> torch.Tensor:
        """One image's decoder-input latents (channels x h x w) as a 1 x 3 x h x w RGB batch."""
        pixels = latents.float().movedim(0, -1) @ self.weight.to(latents.device) + self.bias.to(
            latents.device
        )
        return pixels.movedim(-1, 0).unsqueeze(0).clamp(0.0, 1.0)


# Fitted once per pipeline, on its own thread (the only one that uses it), and dropped with it.
_projections: WeakKeyDictionary[DiffusionPipeline, LatentProjection | None] = WeakKeyDictionary()


def projection_for(pipe: DiffusionPipeline) -> LatentProjection | None:
    """The pipeline's latent-to-RGB projection, fitted on first use; None when it has none."""
    if pipe not in _projections:
        _projections[pipe] = _fit(pipe)
    return _projections[pipe]


def _fit(pipe: DiffusionPipeline) -> LatentProjection | None:
    vae = getattr(pipe, "vae", None)
    factor = getattr(pipe, "vae_scale_factor", None)
    if vae is None or not isinstance(factor, int):
        log.info("%s: no partial images: it has no autoencoder of known scale", type(pipe))
        return None
    generator = torch.Generator().manual_seed(0)
    grid = torch.rand(_FIT_IMAGES, 3, _FIT_GRID, _FIT_GRID, generator=generator)
    side = _FIT_LATENT_SIDE * factor
    images = F.interpolate(grid, size=(side, side), mode="bilinear", align_corners=False)
    try:
        with torch.inference_mode():
            latents = encoded(vae, (images * 2 - 1).to(vae.device, vae.dtype))
            made = None if latents is None else decoded(vae, latents)
    except Exception:  # previews are optional: a pipeline must still generate without them
        log.warning(
            "%s: no partial images: its autoencoder failed to encode or decode",
            type(pipe),
            exc_info=True,
        )
        return None
    if latents is None or made is None:
        log.info("%s: no partial images: Easel does not know its autoencoder", type(pipe))
        return None
    # The target is what the decoder makes of the latents, as the preview is to show: with
    # trained weights that is the images encoded, which stand in where a half-precision decoder
    # overflows (SDXL's in float16).
    made = made.float().cpu()
    decoded_rgb = (made / 2 + 0.5).clamp(0.0, 1.0) if made.isfinite().all() else images
    latents = latents.float().cpu()
    targets = F.adaptive_avg_pool2d(decoded_rgb, (latents.shape[-2], latents.shape[-1]))
    samples = latents.movedim(1, -1).reshape(-1, latents.shape[1])
    inputs = torch.cat([samples, torch.ones(samples.shape[0], 1)], dim=1)
    solution = torch.linalg.lstsq(inputs, targets.movedim(1, -1).reshape(-1, 3)).solution
    return LatentProjection(weight=solution[:-1].contiguous(), bias=solution[-1].contiguous())


def preview_steps(steps: int, count: int) -> dict[int, int]:
    """Step number (1-based) -> partial image index: up to `count` evenly spaced steps before the
    last, fewer when the steps are too few to space them apart."""
    marks = sorted({round((i + 1) * steps / (count + 1)) for i in range(count)})
    return {step: index for index, step in enumerate(s for s in marks if 0 < s < steps)}


@dataclass(frozen=True)
class _Watch:
    """A request previewed in a batch: its first image's row in the batch's latents."""

    job: Job
    request: PreviewRequest
    row: int
    at_steps: dict[int, int]


def step_previews(pipe: DiffusionPipeline, key: BatchKey, parts: Sequence[Part]) -> StepHook | None:
    """The step hook that sends the partial images the batch's requests asked for, or None when
    none asked (or the pipeline cannot preview). Runs on the pipeline's thread."""
    watches: list[_Watch] = []
    row = 0
    for part in parts:
        request = part.job.previews
        if request is not None and part.first == 0:
            at_steps = preview_steps(key.denoising_steps, request.count)
            if at_steps:
                watches.append(_Watch(part.job, request, row, at_steps))
        row += part.count
    if not watches:
        return None
    projection = projection_for(pipe)
    if projection is None:
        return None

    def after_step(step: int, tensors: dict[str, Any]) -> None:
        latents = tensors.get("latents")
        if not isinstance(latents, torch.Tensor):
            return
        for watch in watches:
            index = watch.at_steps.get(step)
            if index is None or watch.job.cancelled:
                continue
            row = latents[watch.row : watch.row + 1]
            readable = decoder_input(pipe, row, key.width, key.height)
            if readable is None or readable.shape[1] != projection.channels:
                return  # a layout the projection does not fit: no previews
            rgb = projection.rgb(readable[0])
            # At the latents' resolution: enlarging here would hold up the pipeline (some 20 ms a
            # preview at 1024x1024 on a CPU) and send 64 times the bytes from a cluster replica.
            watch.request.deliver(index, to_uint8(rgb, rgb.shape[-1], rgb.shape[-2])[0])

    return after_step
