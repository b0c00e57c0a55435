"""When a request's prompt is rewritten, by its catalog entry's `prompt_rewrite` and the
languages its model's text encoder reads; the HTTP layer calls `revise_prompt` once per request."""

from __future__ import annotations

import asyncio
import logging

from easel.catalog import GenerationPlan, ModelSpec
from easel.engine.families import ENGLISH, ModelFamily, family_for_source
from easel.prompts.language import detect_language
from easel.prompts.rewriter import PromptRewriter
from easel.prompts.token_limits import check_prompt_tokens

log = logging.getLogger(__name__)


async def revise_prompt(
    rewriter: PromptRewriter | None, spec: ModelSpec, plan: GenerationPlan
) -> GenerationPlan:
    """`plan` with its prompt rewritten as `spec` asks, or as it was (rewriter off or failed,
    nothing to translate). An English prompt to an English encoder never reaches a translator.
    Raises a 400 for a prompt longer than a T5 or LLM encoder reads."""
    # Reading model_index.json may fetch it from the hub once: off the event loop.
    family = await asyncio.to_thread(family_for_source, spec.source)
    revised = await _rewritten(rewriter, spec, plan, family)
    if family is not None:
        await asyncio.to_thread(check_prompt_tokens, spec.source, family, revised.prompt)
    return revised


async def _rewritten(
    rewriter: PromptRewriter | None,
    spec: ModelSpec,
    plan: GenerationPlan,
    family: ModelFamily | None,
) -> GenerationPlan:
    if rewriter is None or spec.prompt_rewrite == "off":
        return plan
    language = detect_language(plan.user_prompt)
    # A pipeline Easel has no facts about is taken to read English, as nearly all do.
    readable = family.languages if family is not None else ENGLISH
    if spec.prompt_rewrite == "translate" and language in readable:
        return plan
    target = language if language in readable else "en"
    text = await rewriter.rewrite(spec.prompt_rewrite, plan.user_prompt, target)
    if text is None:
        return plan
    fields: dict[str, object] = {
        "prompt_chars": len(plan.user_prompt),
        "prompt_language": language,
        "revised_chars": len(text),
        "revised_language": detect_language(text),
    }
    if rewriter.log_prompts:
        fields.update(prompt=plan.user_prompt, revised_prompt=text)
    log.info("prompt rewritten (%s)", spec.prompt_rewrite, extra=fields)
    return spec.revise(plan, text)
