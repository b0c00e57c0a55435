"""CUDA only: images/s and model FLOP utilisation of the real Z-Image-Turbo and FLUX.2-klein-4B
architectures (random weights) at 1024 px, batch 1 and 4, plain and with `torch.compile`.

The same code runs on any device at toy scale (`measure` with `dit_architectures.toy`), which is
how the tests know it works before a GPU is lent.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import DiffusionPipeline
from torch.utils.flop_counter import FlopCounterMode

from easel.bench import machine
from easel.bench.dit_architectures import REAL_ARCHITECTURES, DitArchitecture
from easel.bench.gpu import datasheet_peak
from easel.bench.report import write_json

Say = Callable[[str], None]

SIDE = 1024
BATCHES = (1, 4)
TIMED_CALLS = 3
PROMPT = "a lighthouse on a cliff at dawn, oil painting"


class CudaRequired(RuntimeError):
    """The real architectures are only measured on a CUDA GPU."""


@dataclass(frozen=True)
class FlopCount:
    per_step: float  # one denoising step: the transformer's forward pass
    per_image: float  # text encoding, every step and the decode, at batch 1


def require_cuda() -> torch.device:
    if not torch.cuda.is_available():
        raise CudaRequired(
            "The DiT architecture benchmark needs a CUDA GPU: Z-Image-Turbo and FLUX.2-klein-4B "
            "at 1024 px do not fit a CPU run. Use `easel bench --dit` for the CPU comparison."
        )
    return torch.device("cuda")


def count_flops(
    pipe: DiffusionPipeline, architecture: DitArchitecture, side: int, steps: int
) -> FlopCount:
    """Matmul, convolution and attention FLOPs counted by PyTorch for one image: a 1-step and a
    2-step call differ by exactly one step, and the rest (encoding, decoding) is the same."""
    one, two = (_counted(pipe, architecture, side, count) for count in (1, 2))
    per_step = two - one
    return FlopCount(per_step=per_step, per_image=one + (steps - 1) * per_step)


def _counted(
    pipe: DiffusionPipeline, architecture: DitArchitecture, side: int, steps: int
) -> float:
    with FlopCounterMode(display=False) as counter:
        _call(pipe, architecture, side, steps, batch=1)
    return float(counter.get_total_flops())


def _call(
    pipe: DiffusionPipeline, architecture: DitArchitecture, side: int, steps: int, batch: int
) -> None:
    with torch.inference_mode():
        pipe(
            prompt=[PROMPT] * batch,
            num_inference_steps=steps,
            guidance_scale=architecture.guidance_scale,
            width=side,
            height=side,
            max_sequence_length=architecture.prompt_tokens,
            output_type="pt",
        )


def images_per_second(
    pipe: DiffusionPipeline,
    architecture: DitArchitecture,
    side: int,
    batch: int,
    timed_calls: int,
    device: torch.device,
) -> float:
    _call(pipe, architecture, side, architecture.steps, batch)  # warm-up (and compilation)
    _synchronize(device)
    started = time.perf_counter()
    for _ in range(timed_calls):
        _call(pipe, architecture, side, architecture.steps, batch)
    _synchronize(device)
    return timed_calls * batch / (time.perf_counter() - started)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(
    architectures: Sequence[DitArchitecture],
    device: torch.device,
    dtype: torch.dtype,
    *,
    peak_flops: float | None,
    side: int = SIDE,
    batches: Sequence[int] = BATCHES,
    compile_transformer: bool = True,
    timed_calls: int = TIMED_CALLS,
    say: Say,
) -> list[dict[str, Any]]:
    """Each architecture built on `device`, its FLOPs per image counted, then timed at every batch
    size as built and, with `compile_transformer`, with its transformer's blocks compiled."""
    results = []
    for architecture in architectures:
        say(f"Building {architecture.name} with random weights ({dtype}) on {device.type} ...")
        pipe = architecture.build(dtype, device)
        flops = count_flops(pipe, architecture, side, architecture.steps)
        entry: dict[str, Any] = {
            "name": architecture.name,
            "pipeline": type(pipe).__name__,
            "size": f"{side}x{side}",
            "steps": architecture.steps,
            "transformer_flops_per_step": float(f"{flops.per_step:.4g}"),
            "flops_per_image": float(f"{flops.per_image:.4g}"),
            "published": architecture.published,
            "runs": [],
        }
        variants = ("plain", "torch.compile") if compile_transformer else ("plain",)
        for variant in variants:
            if variant == "torch.compile":
                # Regional compilation: the transformer's blocks hold nearly all of the FLOPs, and
                # compiling one block's graph for all of them keeps the compile time short.
                pipe.transformer.compile_repeated_blocks(fullgraph=True)
            for batch in batches:
                rate = images_per_second(pipe, architecture, side, batch, timed_calls, device)
                run: dict[str, Any] = {
                    "variant": variant,
                    "batch": batch,
                    "images_per_second": round(rate, 3),
                    "seconds_per_image": round(1 / rate, 3),
                    "mfu": round(flops.per_image * rate / peak_flops, 3) if peak_flops else None,
                }
                say(
                    f"  {architecture.name} {variant} batch {batch}: {run['images_per_second']} "
                    f"images/s ({run['seconds_per_image']} s/image), MFU {run['mfu']}; "
                    f"published: {architecture.published}"
                )
                entry["runs"].append(run)
        results.append(entry)
        del pipe
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return results


def run(out_dir: Path, say: Say) -> Path:
    """Measure the real architectures on this machine's GPU and write `dit-gpu-<machine>.json`
    under `out_dir`; raises CudaRequired without one."""
    device = require_cuda()
    described = machine.describe()
    card = torch.cuda.get_device_name(0)
    peak = datasheet_peak(card)
    dtype = torch.bfloat16
    say(
        f"GPU: {card}, dense bf16 peak "
        f"{f'{peak / 1e12:.0f} TFLOPS' if peak else 'unknown (no MFU)'}; torch {torch.__version__}"
    )
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    architectures = measure(REAL_ARCHITECTURES, device, dtype, peak_flops=peak, say=say)
    results = {
        "machine": described,
        "started": started,
        "device": card,
        "dtype": str(dtype),
        "datasheet_peak_tflops": round(peak / 1e12, 1) if peak else None,
        "architectures": architectures,
    }
    path = out_dir / f"dit-gpu-{machine.slug(described)}.json"
    write_json(results, path)
    return path
