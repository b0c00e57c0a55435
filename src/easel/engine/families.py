"""What Easel knows of each model family diffusers ships: facts a pipeline's configs do not carry
(which languages its text encoder reads, how guidance works, which derived pipelines exist),
keyed by the text-to-image pipeline class named in model_index.json."""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from huggingface_hub import hf_hub_download
from huggingface_hub.errors import HfHubHTTPError

from easel.engine.loader import looks_like_path

log = logging.getLogger(__name__)

# How a family's checkpoints take guidance: classifier-free guidance through `guidance_scale`,
# Qwen-Image's `true_cfg_scale` (its `guidance_scale` is an embedded value guidance-distilled
# checkpoints read), or none at all for guidance-distilled checkpoints (turbo, schnell, klein).
Guidance = Literal["cfg", "true_cfg", "distilled"]

ENGLISH = frozenset({"en"})
# LLM text encoders (Qwen, Gemma, GLM) read Chinese as written; Easel detects nothing finer.
ENGLISH_AND_CHINESE = frozenset({"en", "zh"})


@dataclass(frozen=True)
class ModelFamily:
    name: str
    # The text-to-image pipeline classes of the family (model_index.json's `_class_name`).
    pipelines: tuple[str, ...]
    encoder: Literal["clip", "t5", "llm"]
    # Tokens the text encoder reads of a prompt; more is cut by the pipeline unless handled.
    max_prompt_tokens: int
    languages: frozenset[str]
    # How guidance works on the family's base checkpoints; distilled checkpoints of a family
    # that otherwise takes guidance are recognised by their source (see `guidance_distilled`).
    guidance: Guidance
    img2img: str | None = None
    inpaint: str | None = None
    # The text-to-image pipeline takes reference images itself (`image=`), several at once.
    multi_reference: bool = False


FAMILIES: tuple[ModelFamily, ...] = (
    ModelFamily(
        "stable-diffusion",
        ("StableDiffusionPipeline",),
        "clip",
        77,
        ENGLISH,
        "cfg",
        img2img="StableDiffusionImg2ImgPipeline",
        inpaint="StableDiffusionInpaintPipeline",
    ),
    ModelFamily(
        "stable-diffusion-xl",
        ("StableDiffusionXLPipeline",),
        "clip",
        77,
        ENGLISH,
        "cfg",
        img2img="StableDiffusionXLImg2ImgPipeline",
        inpaint="StableDiffusionXLInpaintPipeline",
    ),
    ModelFamily(
        "stable-diffusion-3",
        ("StableDiffusion3Pipeline",),
        "t5",
        256,
        ENGLISH,
        "cfg",
        img2img="StableDiffusion3Img2ImgPipeline",
        inpaint="StableDiffusion3InpaintPipeline",
    ),
    ModelFamily(
        "flux.1",
        ("FluxPipeline",),
        "t5",
        512,
        ENGLISH,
        "distilled",
        img2img="FluxImg2ImgPipeline",
        inpaint="FluxInpaintPipeline",
    ),
    ModelFamily(
        "flux.2-klein",
        ("Flux2KleinPipeline",),
        "llm",
        512,
        ENGLISH_AND_CHINESE,
        "distilled",
        inpaint="Flux2KleinInpaintPipeline",
        multi_reference=True,
    ),
    ModelFamily(
        "z-image",
        ("ZImagePipeline",),
        "llm",
        512,
        ENGLISH_AND_CHINESE,
        "cfg",
        img2img="ZImageImg2ImgPipeline",
        inpaint="ZImageInpaintPipeline",
    ),
    ModelFamily(
        "qwen-image",
        ("QwenImagePipeline",),
        "llm",
        512,
        ENGLISH_AND_CHINESE,
        "true_cfg",
        img2img="QwenImageImg2ImgPipeline",
        inpaint="QwenImageInpaintPipeline",
    ),
    ModelFamily(
        "sana",
        ("SanaPipeline", "SanaSprintPipeline"),
        "llm",
        300,
        ENGLISH_AND_CHINESE,
        "cfg",
        img2img="SanaSprintImg2ImgPipeline",
    ),
)

_BY_PIPELINE = {pipeline: family for family in FAMILIES for pipeline in family.pipelines}

# Checkpoints trained to need no guidance, by a word their hub id or directory carries: running
# them with guidance and a negative prompt burns their images.
_DISTILLED_MARKERS = ("turbo", "schnell", "lightning", "sprint", "klein")
_UNDISTILLED_MARKERS = ("-base",)


def family_of(pipeline_class: str) -> ModelFamily | None:
    """The family of a text-to-image pipeline class; None for one Easel has no facts about."""
    return _BY_PIPELINE.get(pipeline_class)


def guidance_distilled(family: ModelFamily, source: str) -> bool:
    """Whether the checkpoint at `source` runs without guidance (turbo, schnell, klein...)."""
    lowered = source.lower()
    if any(marker in lowered for marker in _UNDISTILLED_MARKERS):
        return False
    return family.guidance == "distilled" or any(marker in lowered for marker in _DISTILLED_MARKERS)


@functools.cache
def pipeline_class_of(source: str) -> str | None:
    """The pipeline class `source`'s model_index.json names, read without loading any weights (a
    hub id fetches that one small file through the hub cache); None when it cannot be read."""
    try:
        if looks_like_path(source):
            index = Path(source).expanduser() / "model_index.json"
        else:
            index = Path(hf_hub_download(source, "model_index.json"))
        name = json.loads(index.read_text(encoding="utf-8")).get("_class_name")
    except (OSError, ValueError, HfHubHTTPError) as exc:
        log.info("could not read the pipeline class of %s: %s", source, exc)
        return None
    return name if isinstance(name, str) else None


def family_for_source(source: str) -> ModelFamily | None:
    """The family of the pipeline at `source` (a directory or a hub id), if Easel knows it."""
    pipeline_class = pipeline_class_of(source)
    return family_of(pipeline_class) if pipeline_class else None
