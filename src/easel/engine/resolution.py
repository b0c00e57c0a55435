"""The size a pipeline generates at: its native resolution class, in the requested aspect ratio."""

from __future__ import annotations

import math

from diffusers import DiffusionPipeline


def native_side(pipe: DiffusionPipeline) -> int:
    """The side of the square the model was trained at, in pixels, from the model's own config."""
    scale = int(getattr(pipe, "vae_scale_factor", 8))
    default = getattr(pipe, "default_sample_size", None)
    if isinstance(default, int):
        return default * scale
    denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    sample_size = _config_sample_size(denoiser)
    if sample_size is not None:
        return sample_size * scale
    # A DiT that takes any size (Z-Image) has no sample size of its own; its autoencoder's, in
    # pixels, is the resolution the pair was trained at.
    vae_sample_size = _config_sample_size(getattr(pipe, "vae", None))
    if vae_sample_size is not None:
        return vae_sample_size
    return 512


def _config_sample_size(module: object) -> int | None:
    sample_size = getattr(getattr(module, "config", None), "sample_size", None)
    if isinstance(sample_size, int):
        return sample_size
    if isinstance(sample_size, (list, tuple)) and sample_size:
        return int(sample_size[0])
    return None


def size_multiple(pipe: DiffusionPipeline) -> int:
    """What width and height must be divisible by: the VAE factor times the UNet's downsamplings."""
    scale = int(getattr(pipe, "vae_scale_factor", 8))
    unet = getattr(pipe, "unet", None)
    if unet is not None:
        downsamplings = len(unet.config.down_block_types) - 1
        return scale * int(2**downsamplings)
    # Transformer pipelines pack 2x2 latent patches.
    return scale * 2


def generation_size(pipe: DiffusionPipeline, width: int, height: int) -> tuple[int, int]:
    """Width and height with the native pixel count and the requested aspect ratio."""
    side = native_side(pipe)
    multiple = size_multiple(pipe)
    ratio = width / height
    gen_width = side * math.sqrt(ratio)
    gen_height = side / math.sqrt(ratio)
    return _round_to(gen_width, multiple), _round_to(gen_height, multiple)


def _round_to(value: float, multiple: int) -> int:
    return max(multiple, round(value / multiple) * multiple)
