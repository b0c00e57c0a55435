"""Choosing where pipelines run: CUDA, then Apple MPS, then CPU, each in a suitable dtype."""

from __future__ import annotations

import torch

from easel.catalog.machine import CPU_ONLY, Machine


def best_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def dtype_for(device: torch.device) -> torch.dtype:
    # Half precision halves memory and doubles matrix throughput on accelerators; CPUs compute
    # fp16 slowly and some ops lack CPU half kernels, so CPU stays in fp32.
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


def describe_machine(device: torch.device | None = None) -> Machine:
    """What the catalog needs to know of `device` (default: the best one here) to choose the
    built-in models."""
    device = device or best_device()
    if device.type == "cuda":
        return Machine("cuda", torch.cuda.get_device_properties(device).total_memory)
    if device.type == "mps":
        return Machine("mps")
    return CPU_ONLY
