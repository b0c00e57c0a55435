"""When a request's prompt is rewritten, by its catalog entry's `prompt_rewrite` and the
languages its model's text encoder reads; the HTTP layer calls `revise_prompt` once per request."""

from __future__ import annotations

import asyncio
import logging

from easel.catalog import GenerationPlan, ModelSpec
from easel.engine.families import ENGLISH, family_for_source
from easel.prompts.language import detect_language
from easel.prompts.rewriter import PromptRewriter

log = logging.getLogger(__name__)


async def revise_prompt(
    rewriter: PromptRewriter | None, spec: ModelSpec, plan: GenerationPlan
) -> GenerationPlan:
    """`plan` with its prompt rewritten as `spec` asks, or as it was (rewriter off or failed,
    nothing to translate). An English prompt to an English encoder never reaches a translator."""
    if rewriter is None or spec.prompt_rewrite == "off":
        return plan
    language = detect_language(plan.user_prompt)
    # Reading model_index.json may fetch it from the hub once: off the event loop.
    family = await asyncio.to_thread(family_for_source, spec.source)
    # A pipeline Easel has no facts about is taken to read English, as nearly all do.
    readable = family.languages if family is not None else ENGLISH
    if spec.prompt_rewrite == "translate" and language in readable:
        return plan
    target = language if language in readable else "en"
    text = await rewriter.rewrite(spec.prompt_rewrite, plan.user_prompt, target)
    if text is None:
        return plan
    log.info(
        "prompt rewritten (%s)",
        spec.prompt_rewrite,
        extra={
            "prompt_chars": len(plan.user_prompt),
            "prompt_language": language,
            "revised_chars": len(text),
            "revised_language": detect_language(text),
        },
    )
    return spec.revise(plan, text)
