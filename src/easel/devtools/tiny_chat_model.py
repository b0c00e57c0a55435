"""A tiny random-weight Qwen3 chat model saved as a hub repository lays one out, for the
in-process prompt rewriter: the same byte-level tokenizer as the tiny Qwen text encoders, learnt
from English and Chinese prompts, so any text encodes and its answers decode."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import Qwen3ForCausalLM

from easel.devtools.tiny_pipelines import _qwen_config, _qwen_tokenizer


def build_tiny_chat_model(path: Path, *, seed: int = 0) -> Path:
    """Write a random-weight Qwen3ForCausalLM with its tokenizer and chat template to `path`.

    Weights depend only on `seed`. Returns `path`.
    """
    path = Path(path)
    tokenizer = _qwen_tokenizer(path)
    torch.manual_seed(seed)
    config = _qwen_config(len(tokenizer), layers=2)
    # An answer ends at the chat format's end of turn, as Qwen's own models' do.
    vocab = tokenizer.get_vocab()
    config.eos_token_id = vocab["<|im_end|>"]
    config.pad_token_id = vocab["<|endoftext|>"]
    model = Qwen3ForCausalLM(config)
    # Random weights never end a turn: a short bound keeps each answer cheap on a CPU.
    model.generation_config.max_new_tokens = 12
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
