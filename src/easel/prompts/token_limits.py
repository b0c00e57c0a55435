"""The token limit of a T5 or LLM text encoder, enforced before a request is queued: a prompt the
encoder would cut is refused, as OpenAI refuses an over-long prompt, never cut silently.

Refusing rather than truncating: the client learns what happened in the answer it reads, and
chooses what to drop. (CLIP encoders take any length: engine/prompt_embeddings.py chunks them.)
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

from huggingface_hub import hf_hub_download
from huggingface_hub.errors import HfHubHTTPError
from transformers import AutoTokenizer

from easel.engine.families import ModelFamily
from easel.engine.loader import looks_like_path
from easel.errors import InvalidRequestError

log = logging.getLogger(__name__)

_tokenizers: dict[str, Any] = {}
_tokenizers_lock = threading.Lock()


def check_prompt_tokens(source: str, family: ModelFamily, prompt: str) -> None:
    """Refuse `prompt` (400 string_above_max_length) when the long-text encoder of the pipeline at
    `source` reads fewer tokens of it than it has. Blocking: call it off the event loop."""
    if family.encoder == "clip":
        return
    tokenizer = _tokenizer(source)
    if tokenizer is None:  # the pipeline cannot load either: its own 503 says why
        return
    if tokenizer.chat_template:
        # The LLM pipelines wrap the prompt in their chat format before counting to their limit.
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        tokens = len(tokenizer(text, add_special_tokens=False).input_ids)
    else:
        tokens = len(tokenizer(prompt).input_ids)
    if tokens > family.max_prompt_tokens:
        raise InvalidRequestError(
            f"Invalid 'prompt': string too long. Expected a string with maximum length "
            f"{family.max_prompt_tokens} tokens for this model's text encoder, but got a string "
            f"with length {tokens} tokens instead.",
            param="prompt",
            code="string_above_max_length",
        )


def _tokenizer(source: str) -> Any:
    """The tokenizer of the pipeline's long-text encoder: its last tokenizer (T5 comes after CLIP
    in SD3 and FLUX.1; the LLM families have one). Kept once loaded; None while it is not on disk
    (a hub pipeline is read from the cache its worker downloads it into, never fetched here)."""
    with _tokenizers_lock:
        if source in _tokenizers:
            return _tokenizers[source]
        try:
            index = (
                Path(source).expanduser() / "model_index.json"
                if looks_like_path(source)
                else Path(hf_hub_download(source, "model_index.json", local_files_only=True))
            )
            names = sorted(
                name
                for name in json.loads(index.read_text(encoding="utf-8"))
                if name.startswith("tokenizer")
            )
            tokenizer = AutoTokenizer.from_pretrained(
                source, subfolder=names[-1], local_files_only=True
            )
        except (OSError, ValueError, IndexError, HfHubHTTPError) as exc:
            log.info("cannot read the tokenizer of %s to count prompt tokens: %s", source, exc)
            return None
        _tokenizers[source] = tokenizer
        return tokenizer
