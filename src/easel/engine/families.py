"""What Easel knows of each model family diffusers ships: facts a pipeline's configs do not carry
(which languages its text encoder reads, how guidance works, which derived pipelines exist),
keyed by the text-to-image pipeline class named in model_index.json."""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from huggingface_hub import hf_hub_download
from huggingface_hub.errors import HfHubHTTPError

from easel.engine.loader import looks_like_path

log = logging.getLogger(__name__)

# How a family's checkpoints take guidance: classifier-free guidance through `guidance_scale`;
# Qwen-Image's `true_cfg_scale` (its `guidance_scale` is an embedded value guidance-distilled
# checkpoints read); an embedded value the transformer is conditioned on, with no second pass
# and no negative prompt (FLUX.1 dev, FLUX.2 dev, SANA-Sprint); or none at all for
# guidance-distilled checkpoints (turbo, schnell, klein).
Guidance = Literal["cfg", "true_cfg", "embedded", "distilled"]

# Guidance-distilled checkpoints are trained for a few steps (SD-Turbo 1-4, schnell and klein 4,
# Z-Image-Turbo 8); more only spends time.
MAX_DISTILLED_STEPS = 8

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
    # Whether the pipelines read a negative prompt: FLUX.2 guides against an empty prompt of its
    # own, FLUX.1 only with true CFG, which Easel does not run.
    negative_prompt: bool
    img2img: str | None = None
    inpaint: str | None = None
    # The text-to-image pipeline takes reference images itself (`image=`), several at once.
    multi_reference: bool = False


# Checked against diffusers 0.42.1: each class's `__call__` (negative_prompt, true_cfg_scale,
# max_sequence_length defaults) and the derived pipeline classes it ships.
FAMILIES: tuple[ModelFamily, ...] = (
    ModelFamily(
        "stable-diffusion",
        ("StableDiffusionPipeline",),
        encoder="clip",
        max_prompt_tokens=77,
        languages=ENGLISH,
        guidance="cfg",
        negative_prompt=True,
        img2img="StableDiffusionImg2ImgPipeline",
        inpaint="StableDiffusionInpaintPipeline",
    ),
    ModelFamily(
        "stable-diffusion-xl",
        ("StableDiffusionXLPipeline",),
        encoder="clip",
        max_prompt_tokens=77,
        languages=ENGLISH,
        guidance="cfg",
        negative_prompt=True,
        img2img="StableDiffusionXLImg2ImgPipeline",
        inpaint="StableDiffusionXLInpaintPipeline",
    ),
    ModelFamily(
        "stable-diffusion-3",
        ("StableDiffusion3Pipeline",),
        encoder="t5",
        max_prompt_tokens=256,
        languages=ENGLISH,
        guidance="cfg",
        negative_prompt=True,
        img2img="StableDiffusion3Img2ImgPipeline",
        inpaint="StableDiffusion3InpaintPipeline",
    ),
    ModelFamily(
        "flux.1",
        ("FluxPipeline",),
        encoder="t5",
        max_prompt_tokens=512,
        languages=ENGLISH,
        # dev reads its guidance as an embedded value; schnell ignores it (a distilled source).
        guidance="embedded",
        negative_prompt=False,
        img2img="FluxImg2ImgPipeline",
        inpaint="FluxInpaintPipeline",
    ),
    ModelFamily(
        "flux.2",
        ("Flux2Pipeline",),
        encoder="llm",
        max_prompt_tokens=512,
        languages=ENGLISH_AND_CHINESE,
        guidance="embedded",
        negative_prompt=False,
        multi_reference=True,
    ),
    ModelFamily(
        "flux.2-klein",
        ("Flux2KleinPipeline",),
        encoder="llm",
        max_prompt_tokens=512,
        languages=ENGLISH_AND_CHINESE,
        # klein-base guides against an empty prompt of its own; the distilled checkpoints say
        # `is_distilled` in model_index.json.
        guidance="cfg",
        negative_prompt=False,
        inpaint="Flux2KleinInpaintPipeline",
        multi_reference=True,
    ),
    ModelFamily(
        "z-image",
        ("ZImagePipeline",),
        encoder="llm",
        max_prompt_tokens=512,
        languages=ENGLISH_AND_CHINESE,
        guidance="cfg",
        negative_prompt=True,
        img2img="ZImageImg2ImgPipeline",
        inpaint="ZImageInpaintPipeline",
    ),
    ModelFamily(
        "qwen-image",
        ("QwenImagePipeline",),
        encoder="llm",
        max_prompt_tokens=512,
        languages=ENGLISH_AND_CHINESE,
        guidance="true_cfg",
        negative_prompt=True,
        img2img="QwenImageImg2ImgPipeline",
        inpaint="QwenImageInpaintPipeline",
    ),
    ModelFamily(
        "sana",
        ("SanaPipeline",),
        encoder="llm",
        max_prompt_tokens=300,
        languages=ENGLISH_AND_CHINESE,
        guidance="cfg",
        negative_prompt=True,
    ),
    ModelFamily(
        "sana-sprint",
        ("SanaSprintPipeline",),
        encoder="llm",
        max_prompt_tokens=300,
        languages=ENGLISH_AND_CHINESE,
        guidance="embedded",
        negative_prompt=False,
        img2img="SanaSprintImg2ImgPipeline",
    ),
)

# The derived pipelines too: an edit runs one made from the text-to-image one with `from_pipe`.
_BY_PIPELINE = {
    pipeline: family
    for family in FAMILIES
    for pipeline in (*family.pipelines, family.img2img, family.inpaint)
    if pipeline is not None
}

# Checkpoints trained to need no guidance, by a word their hub id or directory carries: running
# them with guidance and a negative prompt burns their images.
_DISTILLED_MARKERS = ("turbo", "schnell", "lightning", "klein")
_UNDISTILLED_MARKERS = ("-base",)


def family_of(pipeline_class: str) -> ModelFamily | None:
    """The family of a pipeline class (text-to-image, image-to-image or inpainting); None for one
    Easel has no facts about."""
    return _BY_PIPELINE.get(pipeline_class)


def guidance_distilled(family: ModelFamily, source: str) -> bool:
    """Whether the checkpoint at `source` runs without guidance (turbo, schnell, klein...): what its
    model_index.json declares (FLUX.2 klein's `is_distilled`), else what its name says."""
    declared = (model_index(source) or {}).get("is_distilled")
    if isinstance(declared, bool):
        return declared
    lowered = _checkpoint_name(source).lower()
    if any(marker in lowered for marker in _UNDISTILLED_MARKERS):
        return False
    return family.guidance == "distilled" or any(marker in lowered for marker in _DISTILLED_MARKERS)


def _checkpoint_name(source: str) -> str:
    """What names the checkpoint in `source`: a hub id's repository, a directory's own name (in
    the hub cache, `models--org--name/snapshots/REVISION`, the repository's), never the folders
    above it."""
    parts = Path(source).parts
    if "snapshots" in parts[1:]:
        return parts[parts.index("snapshots") - 1]
    return parts[-1] if parts else ""


def checkpoint_guidance(family: ModelFamily, source: str) -> Guidance:
    """How the checkpoint at `source` takes guidance: its family's way, unless it is distilled."""
    return "distilled" if guidance_distilled(family, source) else family.guidance


def fitted_guidance_scale(guidance: Guidance, scale: float) -> float:
    """The guidance scale a checkpoint that takes `guidance` runs at: a distilled one at none."""
    return 0.0 if guidance == "distilled" else scale


def fitted_steps(guidance: Guidance, steps: int) -> int:
    """The steps a checkpoint that takes `guidance` runs: a distilled one at most a few."""
    return min(steps, MAX_DISTILLED_STEPS) if guidance == "distilled" else steps


def takes_negative_prompt(family: ModelFamily, guidance: Guidance) -> bool:
    """Whether a checkpoint of `family` that takes `guidance` gets a negative prompt at all."""
    return family.negative_prompt and guidance in ("cfg", "true_cfg")


@functools.cache
def model_index(source: str) -> dict[str, Any] | None:
    """`source`'s model_index.json, read without loading any weights; None when it cannot be
    read. A hub id is read from the Hugging Face cache only: asking the hub would hold up a start
    without network for half a minute per model, and the load downloads the file anyway."""
    try:
        if looks_like_path(source):
            index = Path(source).expanduser() / "model_index.json"
        else:
            index = Path(hf_hub_download(source, "model_index.json", local_files_only=True))
        document = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError, HfHubHTTPError) as exc:
        log.info("could not read the pipeline index of %s: %s", source, exc)
        return None
    return document if isinstance(document, dict) else None


def pipeline_class_of(source: str) -> str | None:
    """The pipeline class `source`'s model_index.json names; None when it cannot be read."""
    name = (model_index(source) or {}).get("_class_name")
    return name if isinstance(name, str) else None


def family_for_source(source: str) -> ModelFamily | None:
    """The family of the pipeline at `source` (a directory or a hub id), if Easel knows it."""
    pipeline_class = pipeline_class_of(source)
    return family_of(pipeline_class) if pipeline_class else None
