"""Where rewrites come from: an OpenAI-compatible chat server the operator runs, or a small
instruct model run in this process with transformers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from contextlib import nullcontext
from typing import Any, Protocol

import openai
import torch
from huggingface_hub import snapshot_download
from huggingface_hub.errors import HfHubHTTPError
from transformers import AutoModelForCausalLM, AutoTokenizer

from easel.engine.loader import LOAD_LOCK, looks_like_path
from easel.engine.memory import MemoryBudget

log = logging.getLogger(__name__)

# A rewrite is a sentence or a paragraph: this bounds a model that does not stop, unless its own
# generation config sets a bound.
MAX_NEW_TOKENS = 256
# Prompts rewritten together in one `generate` call by the in-process model.
MAX_BATCH = 8
# What a causal LM's hub repository holds that loading it reads: configs, tokenizer, weights.
_MODEL_FILES = ["*.json", "*.txt", "*.jinja", "*.safetensors", "*.model"]


class RewriterUnavailable(Exception):
    """The source cannot answer at all (a model that does not load, a server not listening):
    calls are held back for a while rather than made to fail one by one."""


class RewriteSource(Protocol):
    name: str

    async def complete(self, system: str, prompt: str) -> str:
        """The model's answer to `prompt` under the instructions `system`."""
        ...

    async def close(self) -> None: ...


class ChatServerSource:
    """An OpenAI-compatible `/v1/chat/completions` server (vLLM, llama.cpp, Ollama, LiteLLM...)."""

    def __init__(self, base_url: str, model: str) -> None:
        self.name = f"{model} at {base_url}"
        self._model = model
        # Servers the operator runs locally ignore the key; one that wants it reads the SDK's own
        # OPENAI_API_KEY. Retries are left out: the rewrite has its own time limit.
        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=os.environ.get("OPENAI_API_KEY") or "unused", max_retries=0
        )

    async def complete(self, system: str, prompt: str) -> str:
        try:
            completion = await self._client.chat.completions.create(
                model=self._model,
                messages=[
                    {"role": "system", "content": system},
                    {"role": "user", "content": prompt},
                ],
                temperature=0,
                max_tokens=MAX_NEW_TOKENS,
            )
        except openai.APIConnectionError as exc:
            raise RewriterUnavailable(str(exc)) from exc
        return completion.choices[0].message.content or ""

    async def close(self) -> None:
        await self._client.close()


# About what the default rewriter (Qwen3-1.7B in bf16) holds, for the budget before its first load.
EXPECTED_BYTES = 4_000_000_000


class LocalModelSource:
    """A causal LM (a hub id or a directory) loaded on first need on a thread of its own; prompts
    that arrive while it generates are rewritten together in the next call."""

    def __init__(
        self,
        source: str,
        device: torch.device | None = None,
        budget: MemoryBudget | None = None,
    ) -> None:
        self.source = source
        self.name = f"prompt-rewriter:{source}"
        self.device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        # The engine's memory budget when the model shares the pipelines' device: it waits for
        # room as a pipeline does and is released when a pipeline needs the room.
        self.budget = budget
        self._bytes = 0
        self._lock = threading.Lock()
        # Any: to a type checker, transformers' model classes have `generate` as a Tensor.
        self._model: Any = None
        self._tokenizer: Any = None
        self._pending: list[tuple[list[dict[str, str]], asyncio.Future[str]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def complete(self, system: str, prompt: str) -> str:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        messages = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
        self._pending.append((messages, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
        return await future

    async def _run(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            # A caller whose time ran out has cancelled its future: its prompt is not generated.
            live = [(messages, future) for messages, future in batch if not future.done()]
            if not live:
                continue
            try:
                answers = await asyncio.to_thread(self._generate, [m for m, _ in live])
            except Exception as exc:  # each waiting caller falls back on its own
                for _, future in live:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), answer in zip(live, answers, strict=True):
                if not future.done():
                    future.set_result(answer)

    def _generate(self, conversations: list[list[dict[str, str]]]) -> list[str]:
        budgeted = (
            nullcontext()
            if self.budget is None
            else self.budget.use(self, self._bytes or EXPECTED_BYTES)
        )
        with budgeted, self._lock:
            model, tokenizer = self._loaded()
            texts = [
                # Qwen3's switch for its non-thinking mode; other templates ignore it.
                tokenizer.apply_chat_template(
                    messages, tokenize=False, add_generation_prompt=True, enable_thinking=False
                )
                for messages in conversations
            ]
            inputs = tokenizer(texts, return_tensors="pt", padding=True).to(model.device)
            with torch.inference_mode():
                limit = model.generation_config.max_new_tokens or MAX_NEW_TOKENS
                # Greedy: equal prompts get equal rewrites, which the cache relies on.
                output = model.generate(**inputs, max_new_tokens=limit, do_sample=False)
            answers = output[:, inputs["input_ids"].shape[1] :]
            return list(tokenizer.batch_decode(answers, skip_special_tokens=True))

    def _loaded(self) -> tuple[Any, Any]:
        if self._model is None:
            device = self.device
            dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
            try:
                # Fetched before taking the load lock: a download must not hold up pipeline loads.
                directory = (
                    self.source
                    if looks_like_path(self.source)
                    else snapshot_download(self.source, allow_patterns=_MODEL_FILES)
                )
                with LOAD_LOCK:
                    # Left padding: a batch's answers all start where its longest prompt ends.
                    tokenizer = AutoTokenizer.from_pretrained(directory, padding_side="left")
                    model = AutoModelForCausalLM.from_pretrained(
                        directory, dtype=dtype, device_map=device.type
                    )
            except (OSError, ValueError, HfHubHTTPError) as exc:
                raise RewriterUnavailable(f"cannot load {self.source}: {exc}") from exc
            self._model, self._tokenizer = model, tokenizer
            self._bytes = int(sum(p.numel() * p.element_size() for p in model.parameters()))
            log.info("prompt rewriter %s loaded on %s", self.source, device)
        return self._model, self._tokenizer

    def resident_bytes(self) -> int:
        """Bytes of weights held now (0 before the first rewrite and after `release`)."""
        return self._bytes

    def release(self) -> None:
        """Drop the weights; the next rewrite loads them again."""
        with self._lock:
            self._model = self._tokenizer = None
            self._bytes = 0
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    async def close(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        self.release()
