"""A prompt's length in tokens of the pipeline's own text encoder, for OpenAI's `usage`."""

from __future__ import annotations

from diffusers import DiffusionPipeline
from transformers import PreTrainedTokenizerBase


def count_text_tokens(pipe: DiffusionPipeline, text: str) -> int:
    """Tokens of `text` by the pipeline's (first) tokenizer, special tokens and the encoder's
    length limit left out: what the user wrote, as the model reads it. 0 without a tokenizer.

    Not thread-safe with the pipeline's own use of its tokenizer: call on the pipeline's thread.
    """
    tokenizer = getattr(pipe, "tokenizer", None)
    if not isinstance(tokenizer, PreTrainedTokenizerBase):
        return 0
    return len(tokenizer.tokenize(text))
