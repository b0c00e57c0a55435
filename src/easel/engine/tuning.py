"""Making a loaded pipeline faster to serve without changing what it computes."""

from __future__ import annotations

import logging

import torch
from diffusers import DiffusionPipeline

log = logging.getLogger(__name__)

# MPS runs many channels-last convolutions through slow fallbacks; CPU (oneDNN) and CUDA (cuDNN)
# have fast kernels for that layout.
_CHANNELS_LAST_DEVICES = ("cpu", "cuda")


def tune_for_serving(pipe: DiffusionPipeline) -> list[str]:
    """Store the weights of every convolutional component (the UNet, the VAE) channels-last, the
    layout oneDNN and cuDNN convolve fastest: the same numbers, sooner (`easel bench` reports the
    gain as `layout`). Returns the names of the components changed."""
    if pipe.device.type not in _CHANNELS_LAST_DEVICES:
        return []
    changed = []
    for name, component in pipe.components.items():
        if isinstance(component, torch.nn.Module) and _convolves_only_in_2d(component):
            # torch's overloads of Module.to omit the documented `memory_format` keyword
            # (pytorch/pytorch#184642).
            component.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            changed.append(name)
    log.info(
        "%s: channels-last weights for %s", type(pipe).__name__, ", ".join(changed) or "nothing"
    )
    return changed


def _convolves_only_in_2d(component: torch.nn.Module) -> bool:
    # Channels-last is a 4-D layout: a video-style VAE (Qwen-Image's) has 5-D Conv3d weights too.
    modules = list(component.modules())
    return any(isinstance(module, torch.nn.Conv2d) for module in modules) and not any(
        isinstance(module, torch.nn.Conv3d) for module in modules
    )
