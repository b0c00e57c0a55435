"""The real SD 1.5, SD-Turbo (SD 2.1) and SDXL architectures, and TAESD, with random weights, from
their published configs.

Cost does not depend on weight values, so these give true timings without downloading anything.
The tokenizer is the tiny character-level one: prompts cost the same 77 tokens either way.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderTiny,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from easel.devtools.tiny_pipelines import _scheduler, _write_tokenizer

CLIP_VOCAB = 49408


def _clip_l(tokenizer: CLIPTokenizer) -> CLIPTextConfig:
    """CLIP ViT-L/14's text tower (SD 1.5's encoder and SDXL's first)."""
    return _clip_config(
        tokenizer,
        hidden=768,
        layers=12,
        heads=12,
        intermediate=3072,
        projection=768,
        act="quick_gelu",
    )


def _clip_big_g(tokenizer: CLIPTokenizer) -> CLIPTextConfig:
    """OpenCLIP ViT-bigG/14's text tower (SDXL's second encoder)."""
    return _clip_config(
        tokenizer, hidden=1280, layers=32, heads=20, intermediate=5120, projection=1280, act="gelu"
    )


def _clip_config(
    tokenizer: CLIPTokenizer,
    *,
    hidden: int,
    layers: int,
    heads: int,
    intermediate: int,
    projection: int,
    act: str,
) -> CLIPTextConfig:
    # The tiny tokenizer keeps its special tokens at the end of its own vocabulary.
    return CLIPTextConfig(
        vocab_size=CLIP_VOCAB,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        projection_dim=projection,
        hidden_act=act,
        max_position_embeddings=77,
        bos_token_id=len(tokenizer) - 2,
        eos_token_id=len(tokenizer) - 1,
        pad_token_id=len(tokenizer) - 1,
    )


def _open_clip_h(tokenizer: CLIPTokenizer) -> CLIPTextConfig:
    """OpenCLIP ViT-H/14's text tower, less its last layer (SD 2.x's encoder, so SD-Turbo's)."""
    return _clip_config(
        tokenizer, hidden=1024, layers=23, heads=16, intermediate=4096, projection=512, act="gelu"
    )


def _vae(sample_size: int, scaling_factor: float) -> AutoencoderKL:
    return AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        latent_channels=4,
        sample_size=sample_size,
        scaling_factor=scaling_factor,
    )


def _save_sd(
    path: Path,
    dtype: torch.dtype,
    unet: UNet2DConditionModel,
    text_encoder: CLIPTextModel,
    tokenizer: CLIPTokenizer,
) -> Path:
    """An SD 1.x/2.x pipeline of these parts (SD's 512-px autoencoder, no safety checker), saved
    in `dtype`. The autoencoder is built on the device the parts were."""
    with unet.device:
        vae = _vae(512, 0.18215)
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.to(dtype=dtype).save_pretrained(path, safe_serialization=True)
    return path


def build_sd15(path: Path, dtype: torch.dtype, device: torch.device) -> Path:
    tokenizer = _write_tokenizer(path / "tokenizer")
    with device:
        unet = UNet2DConditionModel(
            sample_size=64,
            block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=2,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            cross_attention_dim=768,
            attention_head_dim=8,
        )
        text_encoder = CLIPTextModel(_clip_l(tokenizer))
    return _save_sd(path, dtype, unet, text_encoder, tokenizer)


def build_sd_turbo(path: Path, dtype: torch.dtype, device: torch.device) -> Path:
    """SD-Turbo: the SD 2.1 UNet (linear attention projections, 1024-wide cross-attention) at its
    native 512 px, with the OpenCLIP-H text encoder."""
    tokenizer = _write_tokenizer(path / "tokenizer")
    with device:
        unet = UNet2DConditionModel(
            sample_size=64,
            block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=2,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            cross_attention_dim=1024,
            attention_head_dim=(5, 10, 20, 20),
            use_linear_projection=True,
        )
        text_encoder = CLIPTextModel(_open_clip_h(tokenizer))
    return _save_sd(path, dtype, unet, text_encoder, tokenizer)


def build_taesd(path: Path, dtype: torch.dtype) -> Path:
    """TAESD (`madebyollin/taesd`): AutoencoderTiny's default configuration is its published one."""
    AutoencoderTiny().to(dtype=dtype).save_pretrained(path, safe_serialization=True)
    return path


def build_sdxl(path: Path, dtype: torch.dtype, device: torch.device) -> Path:
    tokenizer = _write_tokenizer(path / "tokenizer")
    tokenizer_2 = _write_tokenizer(path / "tokenizer_2")
    with device:
        unet = UNet2DConditionModel(
            sample_size=128,
            block_out_channels=(320, 640, 1280),
            layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 2, 10),
            attention_head_dim=(5, 10, 20),
            cross_attention_dim=2048,
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816,
        )
        pipe = StableDiffusionXLPipeline(
            vae=_vae(1024, 0.13025),
            text_encoder=CLIPTextModel(_clip_l(tokenizer)),
            text_encoder_2=CLIPTextModelWithProjection(_clip_big_g(tokenizer_2)),
            tokenizer=tokenizer,
            tokenizer_2=tokenizer_2,
            unet=unet,
            scheduler=_scheduler(),
        )
    pipe.to(dtype=dtype).save_pretrained(path, safe_serialization=True)
    return path
