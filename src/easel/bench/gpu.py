"""CUDA only: images/s and model FLOP utilisation of the real SD 1.5 and SDXL architectures,
plain, in the serving layout, and compiled with `torch.compile`, plus the workloads the HTTP
comparison runs on them."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from easel.bench.architectures import build_sd15, build_sdxl
from easel.bench.workload import Workload
from easel.engine.device import dtype_for
from easel.engine.loader import load_pipeline
from easel.engine.tuning import tune_for_serving

Say = Callable[[str], None]

# Dense bf16/fp16 tensor-core peaks from NVIDIA's datasheets (no sparsity), in FLOP/s, keyed by
# the words of the name CUDA reports: the SXM H100 calls itself "NVIDIA H100 80GB HBM3".
DATASHEET_PEAKS = {
    "H100 HBM3": 989.4e12,
    "H100 NVL": 835.5e12,
    "H100 PCIe": 756.5e12,
    "H200": 989.4e12,
    "A100": 312e12,
    "L40S": 362.1e12,
}
BATCHES = (1, 4)
TIMED_CALLS = 3


def workloads(root: Path) -> list[Workload]:
    """SD 1.5 at 512 px (30 steps, guidance 7.5) and SDXL at 1024 px (30 steps, guidance 5)."""
    device, dtype = torch.device("cuda"), dtype_for(torch.device("cuda"))
    sd15 = root / "sd15-arch"
    sdxl = root / "sdxl-arch"
    if not sd15.exists():
        build_sd15(sd15, dtype, device)
    if not sdxl.exists():
        build_sdxl(sdxl, dtype, device)
    return [
        Workload("sd15-arch-512px-30steps", sd15, side=512, steps=30, guidance_scale=7.5),
        Workload("sdxl-arch-1024px-30steps", sdxl, side=1024, steps=30, guidance_scale=5.0),
    ]


def measured_peak(dtype: torch.dtype) -> float:
    """FLOP/s of an 8192^3 matrix product: the dense rate this device really reaches."""
    size = 8192
    a = torch.randn(size, size, device="cuda", dtype=dtype)
    b = torch.randn(size, size, device="cuda", dtype=dtype)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    started = time.perf_counter()
    repeats = 20
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * size**3 * repeats / (time.perf_counter() - started)


def datasheet_peak(name: str) -> float | None:
    for model, peak in DATASHEET_PEAKS.items():
        if all(word in name for word in model.split()):
            return peak
    return None


def measure_architectures(root: Path, say: Say) -> dict[str, Any]:
    device = torch.device("cuda")
    dtype = dtype_for(device)
    name = torch.cuda.get_device_name(0)
    peak = measured_peak(dtype)
    results: dict[str, Any] = {
        "device": name,
        "dtype": str(dtype),
        "attention": "PyTorch SDPA (diffusers AttnProcessor2_0)",
        "measured_matmul_peak_tflops": round(peak / 1e12, 1),
        "datasheet_peak_tflops": (datasheet_peak(name) or 0) / 1e12 or None,
        "architectures": [],
    }
    for workload in workloads(root):
        pipe = load_pipeline(str(workload.pipeline_dir), device, dtype)
        flops = _flops_per_image(pipe, workload)
        entry: dict[str, Any] = {
            "name": workload.name,
            "tflops_per_image": round(flops / 1e12, 2),
            "runs": [],
        }
        # In this order, since each step changes the pipeline in place: as loaded, in the serving
        # layout (engine/tuning.py), then that with the UNet compiled.
        for variant in ("plain", "serving layout", "serving layout + torch.compile"):
            if variant == "serving layout":
                tune_for_serving(pipe)
            elif variant.endswith("compile"):
                # Regional compilation of the UNet: it holds nearly all of the FLOPs.
                pipe.unet = torch.compile(pipe.unet, fullgraph=True)
            for batch in BATCHES:
                images_per_second = _images_per_second(pipe, workload, batch)
                run = {
                    "variant": variant,
                    "compiled": variant.endswith("compile"),
                    "batch": batch,
                    "images_per_second": round(images_per_second, 3),
                    "mfu_vs_measured_peak": round(flops * images_per_second / peak, 3),
                }
                if results["datasheet_peak_tflops"]:
                    run["mfu_vs_datasheet_peak"] = round(
                        flops * images_per_second / (results["datasheet_peak_tflops"] * 1e12), 3
                    )
                say(f"  {workload.name} {variant} batch {batch}: {run}")
                entry["runs"].append(run)
        results["architectures"].append(entry)
        del pipe
        torch.cuda.empty_cache()
    return results


def _call(pipe: Any, workload: Workload, batch: int) -> None:
    pipe(
        [workload.prompt] * batch,
        num_inference_steps=workload.steps,
        guidance_scale=workload.guidance_scale,
        width=workload.side,
        height=workload.side,
        output_type="pt",
    )


def _flops_per_image(pipe: Any, workload: Workload) -> float:
    """Matmul, convolution and attention FLOPs of one image, counted by PyTorch."""
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        _call(pipe, workload, 1)
    return float(counter.get_total_flops())


def _images_per_second(pipe: Any, workload: Workload, batch: int) -> float:
    with torch.inference_mode():
        for _ in range(2):  # warm-up (and compilation)
            _call(pipe, workload, batch)
        torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(TIMED_CALLS):
            _call(pipe, workload, batch)
        torch.cuda.synchronize()
    return TIMED_CALLS * batch / (time.perf_counter() - started)
