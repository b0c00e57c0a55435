"""The prompt rewriter: one source behind a time limit, a cache of equal inputs, and a fallback
to the prompt as written whenever the source fails."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

from easel.engine.worker import RELOAD_BACKOFF_SECONDS
from easel.observability import metrics
from easel.prompts.instructions import RewriteMode, system_prompt
from easel.prompts.language import detect_language
from easel.prompts.sources import (
    ChatServerSource,
    LocalModelSource,
    RewriterUnavailable,
    RewriteSource,
)

if TYPE_CHECKING:
    import torch

    from easel.engine.memory import MemoryBudget

log = logging.getLogger(__name__)

OFF = "off"
CACHED_REWRITES = 1024
# A reasoning model's deliberation, which some chat servers return inside the answer.
_THINKING = re.compile(r"<think>.*?</think>", re.DOTALL)


class PromptRewriter:
    """Rewrites prompts through `source`; `rewrite` never raises for the source's failures."""

    def __init__(
        self, source: RewriteSource, *, timeout_seconds: float, log_prompts: bool = False
    ) -> None:
        self.source = source
        self.timeout_seconds = timeout_seconds
        # Whether log lines about a prompt carry its text (EASEL_LOG_PROMPTS), not only its length.
        self.log_prompts = log_prompts
        self._cache: OrderedDict[tuple[str, str, str], str] = OrderedDict()
        self._unavailable_since: float | None = None

    async def rewrite(self, mode: RewriteMode, prompt: str, language: str) -> str | None:
        """`prompt` rewritten into `language`, or None when the source failed or timed out (the
        request goes on with the prompt as written; the failure is logged and counted)."""
        key = (mode, language, prompt)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        text, failure = await self._ask(mode, prompt, language)
        if failure is not None:
            metrics.PROMPT_REWRITE_FALLBACKS.labels(failure).inc()
            fields: dict[str, object] = {
                "prompt_chars": len(prompt),
                "prompt_language": detect_language(prompt),
            }
            if self.log_prompts:
                fields["prompt"] = prompt
            log.warning(
                "prompt rewrite failed (%s): the prompt goes on as written", failure, extra=fields
            )
            return None
        self._cache[key] = text
        if len(self._cache) > CACHED_REWRITES:
            self._cache.popitem(last=False)
        return text

    async def _ask(self, mode: RewriteMode, prompt: str, language: str) -> tuple[str, str | None]:
        """The source's answer, or why there is none (timeout, unavailable, error)."""
        if self._backing_off():
            return "", "unavailable"
        try:
            async with asyncio.timeout(self.timeout_seconds):
                answer = await self.source.complete(system_prompt(mode, language), prompt)
        except TimeoutError:
            return "", "timeout"
        except RewriterUnavailable as exc:
            self._unavailable_since = time.monotonic()
            log.warning("prompt rewriter %s is unavailable: %s", self.source.name, exc)
            return "", "unavailable"
        except Exception as exc:  # whatever the source does, the request goes on
            log.warning("prompt rewriter %s failed: %r", self.source.name, exc)
            return "", "error"
        text = _THINKING.sub("", answer).strip()
        return (text, None) if text else ("", "error")

    def _backing_off(self) -> bool:
        since = self._unavailable_since
        return since is not None and time.monotonic() - since < RELOAD_BACKOFF_SECONDS

    async def close(self) -> None:
        await self.source.close()


def open_rewriter(
    source: str,
    *,
    model: str | None,
    timeout_seconds: float,
    log_prompts: bool = False,
    device: torch.device | None = None,
    budget: MemoryBudget | None = None,
) -> PromptRewriter | None:
    """The rewriter a `--prompt-rewriter` value names: an http(s)://.../v1 chat server (asked for
    `model`), a hub id or directory of a causal LM (run on `device`, within `budget`), or `off`
    (None)."""
    if source == OFF:
        return None
    chosen: RewriteSource
    if source.startswith(("http://", "https://")):
        if model is None:
            raise ValueError("a chat-server prompt rewriter needs a model name")
        chosen = ChatServerSource(source, model)
    else:
        chosen = LocalModelSource(source, device, budget)
    return PromptRewriter(chosen, timeout_seconds=timeout_seconds, log_prompts=log_prompts)
