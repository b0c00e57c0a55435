"""Prompts longer than a CLIP text encoder reads (77 tokens), for the SD and SDXL pipelines.

The pipelines cut such a prompt at 77 tokens. Here it is encoded in chunks of 77 tokens whose
embeddings are concatenated (compel's EmbeddingsProvider, the maintained implementation), so
every word counts; negative prompts alike. compel's prompt syntax (`word++`, `.blend()`) is not
parsed: an OpenAI prompt is plain text, so `+`, `-` and parentheses mean nothing special.
Prompts within the limit go to the pipeline as text, encoded exactly as it always does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from compel import EmbeddingsProvider, ReturnedEmbeddingsType
from diffusers import (
    DiffusionPipeline,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLInpaintPipeline,
    StableDiffusionXLPipeline,
)

_SD = (StableDiffusionPipeline, StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline)
_SDXL = (
    StableDiffusionXLPipeline,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLInpaintPipeline,
)


def with_long_prompts_encoded(pipe: DiffusionPipeline, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The pipeline call's `kwargs`, with `prompt` and `negative_prompt` replaced by their chunked
    embeddings when one of them is longer than an SD or SDXL text encoder reads; else as given.

    Every image's embeddings are padded with empty chunks to the batch's longest, so a batch of
    short and long prompts still runs as one call.
    """
    prompts: list[str] = kwargs["prompt"]
    negatives: list[str] | None = kwargs.get("negative_prompt")
    if not isinstance(pipe, _SD + _SDXL) or not _any_too_long(pipe, [*prompts, *(negatives or [])]):
        return kwargs
    # The pipelines use the negative embeddings only with classifier-free guidance.
    guided = kwargs["guidance_scale"] > 1
    encoded = {
        key: value for key, value in kwargs.items() if key not in ("prompt", "negative_prompt")
    }
    if isinstance(pipe, _SDXL):
        encoded.update(_sdxl_embeddings(pipe, prompts, negatives, guided))
    else:
        encoders = [_provider(pipe.tokenizer, pipe.text_encoder, sdxl=False)]
        texts = [*prompts, *(negatives or [""] * len(prompts))] if guided else prompts
        embeds = _padded([_embed(encoders, text) for text in texts], encoders)
        encoded["prompt_embeds"] = embeds[: len(prompts)]
        if guided:
            encoded["negative_prompt_embeds"] = embeds[len(prompts) :]
    return encoded


def _any_too_long(pipe: DiffusionPipeline, texts: Sequence[str]) -> bool:
    tokenizer = pipe.tokenizer
    limit: int = tokenizer.model_max_length
    return any(
        len(ids) > limit
        for ids in tokenizer(list(texts), truncation=False, verbose=False).input_ids
    )


def _sdxl_embeddings(
    pipe: DiffusionPipeline, prompts: list[str], negatives: list[str] | None, guided: bool
) -> dict[str, torch.Tensor]:
    # SDXL reads both encoders' penultimate hidden states side by side, and the second encoder's
    # pooled output of the first chunk.
    encoders = [
        _provider(pipe.tokenizer, pipe.text_encoder, sdxl=True),
        _provider(pipe.tokenizer_2, pipe.text_encoder_2, sdxl=True),
    ]
    texts = [*prompts, *(negatives or [""] * len(prompts))] if guided else prompts
    embeds = _padded([_embed(encoders, text) for text in texts], encoders)
    pooled = torch.cat([encoders[1].get_pooled_embeddings([text]) for text in texts])
    if guided and negatives is None and pipe.config.force_zeros_for_empty_prompt:
        # What the pipeline does itself when no negative prompt is given.
        embeds[len(prompts) :] = 0
        pooled[len(prompts) :] = 0
    result = {
        "prompt_embeds": embeds[: len(prompts)],
        "pooled_prompt_embeds": pooled[: len(prompts)],
    }
    if guided:
        result["negative_prompt_embeds"] = embeds[len(prompts) :]
        result["negative_pooled_prompt_embeds"] = pooled[len(prompts) :]
    return result


def _provider(tokenizer: Any, text_encoder: Any, *, sdxl: bool) -> EmbeddingsProvider:
    return EmbeddingsProvider(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        dtype_for_device_getter=lambda _device: text_encoder.dtype,
        truncate=False,
        returned_embeddings_type=ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED
        if sdxl
        else ReturnedEmbeddingsType.LAST_HIDDEN_STATES_NORMALIZED,
    )


def _embed(encoders: list[EmbeddingsProvider], text: str) -> list[torch.Tensor]:
    """`text`'s chunked embeddings from each encoder: (1, 77 * chunks, width) each."""
    return [
        encoder.get_embeddings_for_weighted_prompt_fragments(
            text_batch=[[text]], fragment_weights_batch=[[1.0]], device=encoder.device
        )
        for encoder in encoders
    ]


def _padded(
    embeddings: list[list[torch.Tensor]], encoders: list[EmbeddingsProvider]
) -> torch.Tensor:
    """One (texts, tokens, width) tensor: each text's embeddings from every encoder padded with
    empty chunks to the longest text and joined along the width."""
    tokens = max(e.shape[1] for per_text in embeddings for e in per_text)
    rows = []
    for per_text in embeddings:
        parts = []
        for encoder, embedding in zip(encoders, per_text, strict=True):
            empty = encoder.empty_z.to(embedding.dtype)
            missing = (tokens - embedding.shape[1]) // empty.shape[1]
            parts.append(torch.cat([embedding, empty.repeat(1, missing, 1)], dim=1))
        rows.append(torch.cat(parts, dim=-1))
    return torch.cat(rows)
