"""A pipeline's weights as the memory budget sees them: estimated from its files before a load,
measured once loaded, and dropped when the budget needs the room."""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import torch
from diffusers import DiffusionPipeline
from safetensors import SafetensorError, safe_open

log = logging.getLogger(__name__)

# safetensors' names of its floating dtypes: these are cast to the serving dtype on load.
_FLOAT_DTYPES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1}
# Every other dtype keeps its size (integer buffers such as position ids).
_OTHER_DTYPES = {"I64": 8, "U64": 8, "I32": 4, "U32": 4, "I16": 2, "U16": 2, "I8": 1, "U8": 1}
# Pickled weights (.bin, .pt) carry no header to read dtypes from: assumed saved in fp32.
_PICKLED_ITEMSIZE = 4


def estimate_bytes(directory: Path, dtype: torch.dtype) -> int:
    """About how many bytes the pipeline in `directory` will hold loaded in `dtype`: its
    components' weight files, floating tensors resized to `dtype`. Unreadable files count as
    nothing: the load that follows reports them, and the measurement after it corrects the
    estimate."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    total = 0
    for path in _weight_files(directory):
        try:
            total += _file_bytes(path, itemsize)
        except (OSError, SafetensorError) as exc:
            log.warning("cannot read the size of %s: %s", path, exc)
    return total


def _weight_files(directory: Path) -> Iterator[Path]:
    """The files a load reads: each component's safetensors weights without a variant (diffusers'
    default choice), else its pickled weights."""
    try:
        index = json.loads((directory / "model_index.json").read_text())
    except (OSError, ValueError):
        return
    for name, value in index.items():
        folder = directory / name
        if name.startswith("_") or not isinstance(value, list) or not folder.is_dir():
            continue
        # `model.fp16.safetensors` is a variant, `model-00001-of-00002.safetensors` a shard.
        plain = [path for path in folder.glob("*.safetensors") if "." not in path.stem]
        yield from plain or [*folder.glob("*.bin"), *folder.glob("*.pt")]


def _file_bytes(path: Path, itemsize: int) -> int:
    if path.suffix != ".safetensors":
        return path.stat().st_size * itemsize // _PICKLED_ITEMSIZE
    total = 0
    with safe_open(str(path), framework="pt") as weights:
        for key in weights.keys():  # noqa: SIM118 - safe_open is not a mapping
            tensor = weights.get_slice(key)
            elements = 1
            for dimension in tensor.get_shape():
                elements *= dimension
            stored = tensor.get_dtype()
            size = itemsize if stored in _FLOAT_DTYPES else _OTHER_DTYPES.get(stored, itemsize)
            total += elements * size
    return total


def _modules(pipe: DiffusionPipeline) -> list[torch.nn.Module]:
    # Pipelines made with `from_pipe` share component modules: each counts once.
    unique = {
        id(component): component
        for component in pipe.components.values()
        if isinstance(component, torch.nn.Module)
    }
    return list(unique.values())


def module_bytes(module: torch.nn.Module) -> int:
    """Bytes of a module's parameters and buffers."""
    tensors = [*module.parameters(), *module.buffers()]
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors)


def loaded_bytes(pipe: DiffusionPipeline) -> int:
    """Bytes of the pipeline's parameters and buffers, on whatever device they are."""
    return sum(module_bytes(module) for module in _modules(pipe))


def largest_module_bytes(pipe: DiffusionPipeline) -> int:
    """What model CPU offload keeps on the accelerator at once: the largest component."""
    return max((module_bytes(module) for module in _modules(pipe)), default=0)


def drop_weights(pipe: DiffusionPipeline, device: torch.device) -> None:
    """Free the pipeline's weights now. Its modules move to the meta device, so the memory goes even
    while something still holds the pipeline object (a batcher's last reference to it); that
    object is unusable afterwards."""
    # Offload hooks would move the modules back to the accelerator on their next call.
    pipe.remove_all_hooks()
    for module in _modules(pipe):
        module.to("meta")
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()
