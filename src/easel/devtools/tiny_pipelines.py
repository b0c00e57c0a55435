"""Tiny random-weight Stable Diffusion pipelines saved in the exact layout of a hub repository.

The architectures follow the real SD 1.x and SDXL layouts (component classes, a VAE with x8
downsampling, an SDXL UNet conditioned on pooled text and time ids) at a size that runs on a CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

_BOS = "<|startoftext|>"
_EOS = "<|endoftext|>"
_MAX_TOKENS = 77
# Printable ASCII minus the space: CLIP splits words on whitespace, so the space never reaches BPE.
_CHARS = [chr(code) for code in range(0x21, 0x7F)]
_TEXT_HIDDEN = 32
_TIME_EMBED_DIM = 8
# Latent side of the native resolution (x8 VAE): 256 px for SD; 512 px for SDXL, where one 25-step
# guided image still takes about 1 s on two CPU cores.
_SD_SAMPLE_SIZE = 32
_SDXL_SAMPLE_SIZE = 64


def build_tiny_sd(path: Path, *, seed: int = 0) -> Path:
    """Write a random-weight SD 1.x pipeline (StableDiffusionPipeline, 256 px native) to `path`.

    Weights depend only on `seed`. Returns `path`.
    """
    path = Path(path)
    tokenizer = _write_tokenizer(path / "tokenizer")
    torch.manual_seed(seed)
    pipe = StableDiffusionPipeline(
        vae=_vae(_SD_SAMPLE_SIZE, scaling_factor=0.18215),
        text_encoder=CLIPTextModel(_text_config(len(tokenizer))),
        tokenizer=tokenizer,
        unet=_unet(_SD_SAMPLE_SIZE, cross_attention_dim=_TEXT_HIDDEN),
        scheduler=_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(path, safe_serialization=True)
    return path


def build_tiny_sdxl(path: Path, *, seed: int = 0) -> Path:
    """Write a random-weight SDXL pipeline (StableDiffusionXLPipeline, 512 px native) to `path`.

    Weights depend only on `seed`. Returns `path`.
    """
    path = Path(path)
    tokenizer = _write_tokenizer(path / "tokenizer")
    tokenizer_2 = _write_tokenizer(path / "tokenizer_2")
    torch.manual_seed(seed)
    text_config = _text_config(len(tokenizer))
    pipe = StableDiffusionXLPipeline(
        vae=_vae(_SDXL_SAMPLE_SIZE, scaling_factor=0.13025),
        text_encoder=CLIPTextModel(text_config),
        text_encoder_2=CLIPTextModelWithProjection(text_config),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        # SDXL cross-attends to both encoders' hidden states concatenated, and adds the pooled
        # projection of encoder 2 (projection_dim: _TEXT_HIDDEN) plus six size/crop ids to the time
        # embedding.
        unet=_unet(
            _SDXL_SAMPLE_SIZE,
            cross_attention_dim=2 * _TEXT_HIDDEN,
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=_TIME_EMBED_DIM,
            projection_class_embeddings_input_dim=_TEXT_HIDDEN + 6 * _TIME_EMBED_DIM,
        ),
        scheduler=_scheduler(),
    )
    pipe.save_pretrained(path, safe_serialization=True)
    return path


def _write_tokenizer(folder: Path) -> CLIPTokenizer:
    """Write a character-level CLIP vocabulary (vocab.json, merges.txt) to `folder` and load it."""
    folder.mkdir(parents=True, exist_ok=True)
    # Each character alone (inside a word) and with `</w>` (ending a word); no merges are needed.
    tokens = _CHARS + [char + "</w>" for char in _CHARS] + [_BOS, _EOS]
    vocab = {token: index for index, token in enumerate(tokens)}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    # Without an explicit length the tokenizer's default overflows the pipeline's truncation.
    tokenizer: CLIPTokenizer = CLIPTokenizer.from_pretrained(folder, model_max_length=_MAX_TOKENS)
    return tokenizer


def _text_config(vocab_size: int) -> CLIPTextConfig:
    """A two-layer CLIP text encoder config; the special tokens sit at the end of the vocabulary."""
    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=_TEXT_HIDDEN,
        intermediate_size=2 * _TEXT_HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=_MAX_TOKENS,
        projection_dim=_TEXT_HIDDEN,
        hidden_act="quick_gelu",
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
    )


def _vae(latent_size: int, *, scaling_factor: float) -> AutoencoderKL:
    """A VAE with four blocks, hence the real x8 downsampling, and narrow channels."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=latent_size * 8,
        scaling_factor=scaling_factor,
        # Mid-block self-attention over every latent pixel would dominate the cost at large sizes.
        mid_block_add_attention=False,
    )


def _unet(sample_size: int, *, cross_attention_dim: int, **extra: object) -> UNet2DConditionModel:
    """A two-level UNet; cross-attention only at the coarser level keeps attention cheap."""
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        cross_attention_dim=cross_attention_dim,
        # Read by diffusers as the head count: two heads of width 16. Narrower heads make CPU
        # attention (1,024 tokens at 512 px) the bulk of a step.
        attention_head_dim=2,
        **extra,
    )


def _scheduler() -> EulerDiscreteScheduler:
    """Euler with the beta schedule and timestep spacing that SD 1.5 and SDXL ship with."""
    return EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        timestep_spacing="leading",
        steps_offset=1,
    )
