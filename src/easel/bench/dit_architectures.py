"""The real Z-Image-Turbo and FLUX.2-klein-4B architectures with random weights, built in memory
from their published configurations, and toy-sized twins that run the same code on a CPU.

Cost does not depend on weight values, so these give true timings without downloading anything.
The tokenizer is the small byte-level BPE of the test pipelines: a prompt's token count differs a
little from the real Qwen tokenizer's, which changes the text encoder's cost by a few tokens.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderKLFlux2,
    DiffusionPipeline,
    FlowMatchEulerDiscreteScheduler,
    Flux2KleinPipeline,
    Flux2Transformer2DModel,
    ZImagePipeline,
    ZImageTransformer2DModel,
)
from transformers import Qwen2Tokenizer, Qwen3Config, Qwen3ForCausalLM, Qwen3Model

from easel.devtools.tiny_pipelines import _qwen_tokenizer

# Qwen3-4B, the text encoder of both models. Layers and heads: the Qwen3-4B(-Base) model card
# ("36 layers, 32 heads for Q and 8 for KV"); width 2560: diffusers' Z-Image transformer takes
# `cap_feat_dim=2560` and scripts/convert_flux2_to_diffusers.py gives klein-4B
# `joint_attention_dim=7680` (three stacked 2560-wide hidden states); the rest from its config.json.
QWEN3_4B: dict[str, Any] = {
    "vocab_size": 151936,
    "hidden_size": 2560,
    "intermediate_size": 9728,
    "num_hidden_layers": 36,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "max_position_embeddings": 40960,
    "rope_theta": 1000000.0,
    "tie_word_embeddings": True,
}

# Z-Image-Turbo's transformer (Tongyi-MAI/Z-Image-Turbo transformer/config.json): the defaults of
# diffusers 0.42's ZImageTransformer2DModel, which were written from it; 6B parameters.
ZIMAGE_TURBO_TRANSFORMER: dict[str, Any] = {
    "in_channels": 16,
    "dim": 3840,
    "n_layers": 30,
    "n_refiner_layers": 2,
    "n_heads": 30,
    "n_kv_heads": 30,
    "cap_feat_dim": 2560,
    "axes_dims": [32, 48, 48],
}

# Z-Image decodes with FLUX.1's autoencoder (16 latent channels, a scale and a shift, no quant
# convolutions): the FLUX.1 VAE config as diffusers' AutoencoderKL takes it.
FLUX1_VAE: dict[str, Any] = {
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 16,
    "scaling_factor": 0.3611,
    "shift_factor": 0.1159,
    "use_quant_conv": False,
    "use_post_quant_conv": False,
}

# FLUX.2-klein-4B's transformer: get_flux2_transformer_config("klein-4b") in diffusers'
# scripts/convert_flux2_to_diffusers.py (5 double-stream and 20 single-stream blocks, 24 heads of
# 128, step-distilled so no guidance embedding).
FLUX2_KLEIN_4B_TRANSFORMER: dict[str, Any] = {
    "patch_size": 1,
    "in_channels": 128,
    "num_layers": 5,
    "num_single_layers": 20,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 7680,
    "timestep_guidance_channels": 256,
    "mlp_ratio": 3.0,
    "axes_dims_rope": (32, 32, 32, 32),
    "rope_theta": 2000,
    "eps": 1e-6,
    "guidance_embeds": False,
}

# The FLUX.2 autoencoder: that conversion script builds it as `AutoencoderKLFlux2()`, so its
# defaults are the published configuration.
FLUX2_VAE: dict[str, Any] = {}

# Toy sizes: the same classes, a few thousand parameters wide, for CPU tests of the GPU code path.
_TOY_QWEN3: dict[str, Any] = {
    "vocab_size": 512,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "max_position_embeddings": 1024,
}
_TOY_VAE: dict[str, Any] = {
    "down_block_types": ("DownEncoderBlock2D",) * 2,
    "up_block_types": ("UpDecoderBlock2D",) * 2,
    "block_out_channels": (8, 16),
    "layers_per_block": 1,
    "norm_num_groups": 4,
    "mid_block_add_attention": False,
}
# FLUX.2 klein reads the Qwen3 encoder's hidden states 9, 18 and 27: even a toy needs 27 layers.
_KLEIN_TEXT_LAYERS = 27
_TOY_KLEIN_LATENTS = 8
_TOY_PROMPT_TOKENS = 16


@dataclass(frozen=True)
class DitArchitecture:
    """One model's configuration and how it is served: steps per image and the published number
    its results are printed beside."""

    name: str
    text_encoder: dict[str, Any]
    transformer: dict[str, Any]
    vae: dict[str, Any]
    steps: int
    guidance_scale: float
    published: str
    builder: Callable[[DitArchitecture], DiffusionPipeline]
    # Tokens the prompt is padded to before the text encoder: both pipelines' default.
    prompt_tokens: int = 512

    def build(self, dtype: torch.dtype, device: torch.device) -> DiffusionPipeline:
        """The pipeline with random weights, created directly on `device` in `dtype`."""
        with _default_dtype(dtype), device:
            pipe = self.builder(self)
        pipe.set_progress_bar_config(disable=True)
        return pipe


@contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    # Weights are created in the serving dtype: a 10B-parameter model never exists in float32.
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _tokenizer() -> Qwen2Tokenizer:
    with tempfile.TemporaryDirectory(prefix="easel-bench-tokenizer-") as folder:
        return _qwen_tokenizer(Path(folder))


def _build_zimage(architecture: DitArchitecture) -> DiffusionPipeline:
    tokenizer = _tokenizer()
    return ZImagePipeline(
        vae=AutoencoderKL(**architecture.vae),
        text_encoder=Qwen3Model(Qwen3Config(**architecture.text_encoder)),
        tokenizer=tokenizer,
        transformer=ZImageTransformer2DModel(**architecture.transformer),
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0),
    )


def _build_flux2_klein(architecture: DitArchitecture) -> DiffusionPipeline:
    tokenizer = _tokenizer()
    return Flux2KleinPipeline(
        vae=AutoencoderKLFlux2(**architecture.vae),
        text_encoder=Qwen3ForCausalLM(Qwen3Config(**architecture.text_encoder)),
        tokenizer=tokenizer,
        transformer=Flux2Transformer2DModel(**architecture.transformer),
        scheduler=FlowMatchEulerDiscreteScheduler(
            num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True
        ),
        is_distilled=True,
    )


ZIMAGE_TURBO = DitArchitecture(
    name="Z-Image-Turbo",
    text_encoder=QWEN3_4B,
    transformer=ZIMAGE_TURBO_TRANSFORMER,
    vae=FLUX1_VAE,
    # The pipeline docstring's turbo settings: 8 steps without guidance.
    steps=8,
    guidance_scale=0.0,
    published='"sub-second" per 1024 px image on an H800 (model card)',
    builder=_build_zimage,
)

FLUX2_KLEIN_4B = DitArchitecture(
    name="FLUX.2-klein-4B",
    text_encoder=QWEN3_4B,
    transformer=FLUX2_KLEIN_4B_TRANSFORMER,
    vae=FLUX2_VAE,
    steps=4,
    guidance_scale=1.0,
    published="0.57 s per 1024 px image, 4 steps, H100 (inferencebench.io)",
    builder=_build_flux2_klein,
)

REAL_ARCHITECTURES = (ZIMAGE_TURBO, FLUX2_KLEIN_4B)


ZIMAGE_TURBO_TOY = replace(
    ZIMAGE_TURBO,
    name="Z-Image-Turbo (toy)",
    text_encoder={**QWEN3_4B, **_TOY_QWEN3, "num_hidden_layers": 2},
    transformer={
        "in_channels": 16,
        "dim": 32,
        "n_layers": 2,
        "n_refiner_layers": 1,
        "n_heads": 2,
        "n_kv_heads": 2,
        "cap_feat_dim": 32,
        "axes_dims": [4, 6, 6],
    },
    vae={
        **_TOY_VAE,
        **{key: FLUX1_VAE[key] for key in ("latent_channels", "scaling_factor", "shift_factor")},
        "use_quant_conv": False,
        "use_post_quant_conv": False,
    },
    steps=1,
    prompt_tokens=_TOY_PROMPT_TOKENS,
)

FLUX2_KLEIN_4B_TOY = replace(
    FLUX2_KLEIN_4B,
    name="FLUX.2-klein-4B (toy)",
    text_encoder={**QWEN3_4B, **_TOY_QWEN3, "num_hidden_layers": _KLEIN_TEXT_LAYERS},
    transformer={
        "in_channels": 4 * _TOY_KLEIN_LATENTS,
        "num_layers": 1,
        "num_single_layers": 1,
        "attention_head_dim": 16,
        "num_attention_heads": 1,
        "joint_attention_dim": 3 * _TOY_QWEN3["hidden_size"],
        "timestep_guidance_channels": 32,
        "axes_dims_rope": (4, 4, 4, 4),
        "guidance_embeds": False,
    },
    vae={**_TOY_VAE, "latent_channels": _TOY_KLEIN_LATENTS},
    steps=1,
    prompt_tokens=_TOY_PROMPT_TOKENS,
)

_TOY_TWINS = {ZIMAGE_TURBO.name: ZIMAGE_TURBO_TOY, FLUX2_KLEIN_4B.name: FLUX2_KLEIN_4B_TOY}


def toy(architecture: DitArchitecture) -> DitArchitecture:
    """The same model family at toy width, one step and a short prompt, built by the same code."""
    return _TOY_TWINS[architecture.name]
