"""The space a pipeline's autoencoder decodes from, reached from both sides: the latents a pipeline
denoises (spatial, or packed into a sequence of 2x2 patches) turned into its decoder's input as the
pipeline does before `vae.decode`, and images encoded into that same space by the autoencoder.

Checked against diffusers 0.42.1: SD, SDXL, SD3 and Z-Image (spatial, `AutoencoderKL`), FLUX.1
(packed, `AutoencoderKL`), FLUX.2 (packed, `AutoencoderKLFlux2`), Qwen-Image (packed,
`AutoencoderKLQwenImage`, one frame) and Sana (spatial, `AutoencoderDC`); an `AutoencoderTiny` in
place of a spatial pipeline's own autoencoder too.
"""

from __future__ import annotations

import torch
from diffusers import (
    AutoencoderDC,
    AutoencoderKL,
    AutoencoderKLFlux2,
    AutoencoderKLQwenImage,
    AutoencoderTiny,
    DiffusionPipeline,
)

# Packed pipelines cut their latents into 2x2 patches, one token each, rows first.
_PATCH = 2


def decoder_input(
    pipe: DiffusionPipeline, latents: torch.Tensor, width: int, height: int
) -> torch.Tensor | None:
    """A batch of the latents `pipe` denoises for width x height images (as its step callback
    sees them) as its autoencoder's decoder reads them: batch x channels x h x w, in float (Qwen-
    Image's frame axis left out). None for a layout or autoencoder Easel does not know."""
    vae = getattr(pipe, "vae", None)
    latents = latents.float()
    if latents.ndim == 4:
        return _unscaled(vae, latents)
    if latents.ndim != 3 or latents.shape[2] % _PATCH**2:
        return None
    scale_factor = getattr(pipe, "vae_scale_factor", None)
    if not isinstance(scale_factor, int):
        return None
    # The pipelines' own rounding of the size to whole patches.
    rows, cols = height // (_PATCH * scale_factor), width // (_PATCH * scale_factor)
    if rows * cols == 0 or latents.shape[1] != rows * cols:
        return None
    if isinstance(vae, AutoencoderKLFlux2):
        # FLUX.2 normalises whole patches with its autoencoder's batch-norm statistics.
        mean = vae.bn.running_mean.float().to(latents.device)
        std = torch.sqrt(vae.bn.running_var.float() + vae.config.batch_norm_eps).to(latents.device)
        return _unpacked(latents * std + mean, rows, cols)
    spatial = _unpacked(latents, rows, cols)
    if isinstance(vae, AutoencoderKLQwenImage):
        mean = torch.tensor(vae.config.latents_mean, device=latents.device).view(1, -1, 1, 1)
        std = torch.tensor(vae.config.latents_std, device=latents.device).view(1, -1, 1, 1)
        return spatial * std + mean
    return _unscaled(vae, spatial)


def encoded(vae: object, images: torch.Tensor) -> torch.Tensor | None:
    """Images (batch x 3 x H x W, -1..1, on the autoencoder's device and dtype) encoded into the
    space its decoder reads: each latent's most likely value. None for an autoencoder Easel does
    not know."""
    latents: torch.Tensor
    if isinstance(vae, AutoencoderKLQwenImage):
        latents = vae.encode(images.unsqueeze(2)).latent_dist.mean[:, :, 0]
    elif isinstance(vae, AutoencoderKL | AutoencoderKLFlux2):
        latents = vae.encode(images).latent_dist.mean
    elif isinstance(vae, AutoencoderDC):
        latents = vae.encode(images).latent
    elif isinstance(vae, AutoencoderTiny):
        latents = vae.encode(images).latents
    else:
        return None
    return latents


def decoded(vae: object, latents: torch.Tensor) -> torch.Tensor | None:
    """Latents in the space the autoencoder's decoder reads (batch x channels x h x w) decoded to
    images, batch x 3 x H x W, -1..1. None for an autoencoder Easel does not know."""
    images: torch.Tensor
    if isinstance(vae, AutoencoderKLQwenImage):
        images = vae.decode(latents.unsqueeze(2)).sample[:, :, 0]
    elif isinstance(vae, AutoencoderKL | AutoencoderKLFlux2 | AutoencoderDC | AutoencoderTiny):
        images = vae.decode(latents).sample
    else:
        return None
    return images


def _unpacked(tokens: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Patch tokens, batch x (rows * cols) x (channels * 2 * 2), as batch x channels x 2rows x
    2cols latents."""
    batch, _, features = tokens.shape
    channels = features // _PATCH**2
    patches = tokens.reshape(batch, rows, cols, channels, _PATCH, _PATCH)
    return patches.permute(0, 3, 1, 4, 2, 5).reshape(batch, channels, rows * _PATCH, cols * _PATCH)


def _unscaled(vae: object, latents: torch.Tensor) -> torch.Tensor | None:
    """Spatial latents in the denoiser's scale -> the decoder's, as the pipelines of
    `AutoencoderKL`, `AutoencoderDC` and `AutoencoderTiny` (Easel's `decoder`) undo it."""
    if not isinstance(vae, AutoencoderKL | AutoencoderDC | AutoencoderTiny):
        return None
    scale: float = vae.config.scaling_factor
    shift: float = getattr(vae.config, "shift_factor", None) or 0.0
    return latents / scale + shift
