"""How a batch's guidance and negative prompts reach a pipeline call: by the pipeline's family."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from diffusers import DiffusionPipeline

from easel.engine.families import (
    Guidance,
    checkpoint_guidance,
    family_of,
    fitted_guidance_scale,
    takes_negative_prompt,
)

if TYPE_CHECKING:
    from easel.engine.jobs import BatchKey

# Guidance at or below this runs a single pass in diffusers' pipelines: no guidance at all.
NO_GUIDANCE_ABOVE = 1.0
# What Qwen-Image's true CFG runs its second pass on when the request has no negative prompt:
# without one the pipeline skips the pass, and with it the guidance.
EMPTY_NEGATIVE_PROMPT = " "


def guidance_arguments(
    pipe: DiffusionPipeline, key: BatchKey, negatives: list[str]
) -> dict[str, Any]:
    """The guidance keyword arguments of `pipe`'s call for a batch of `key`, whose images'
    negative prompts are `negatives`: a guidance-distilled checkpoint gets guidance 0 and no
    negative prompt, Qwen-Image `true_cfg_scale`, and a family that reads no negative prompt never
    gets one."""
    family = family_of(type(pipe).__name__)
    if family is None:
        # A pipeline Easel has no facts about: classifier-free guidance, as most take it.
        guidance: Guidance = "cfg"
        takes_negative = "negative_prompt" in inspect.signature(pipe.__call__).parameters
    else:
        # Where it was loaded from: a directory, the hub snapshot for a hub id.
        guidance = checkpoint_guidance(family, str(pipe.name_or_path or ""))
        takes_negative = takes_negative_prompt(family, guidance)
    scale = fitted_guidance_scale(guidance, key.guidance_scale)
    if guidance == "true_cfg":
        if scale <= NO_GUIDANCE_ABOVE:
            return {"true_cfg_scale": scale}
        given = negatives if key.has_negative_prompt else [EMPTY_NEGATIVE_PROMPT] * len(negatives)
        return {"true_cfg_scale": scale, "negative_prompt": given}
    arguments: dict[str, Any] = {"guidance_scale": scale}
    if key.has_negative_prompt and takes_negative:
        arguments["negative_prompt"] = negatives
    return arguments
