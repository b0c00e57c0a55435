"""The baseline: the diffusers pipeline called in-process, one request at a time."""

from __future__ import annotations

import time

import torch

from easel.bench.workload import Workload
from easel.engine.device import best_device, dtype_for
from easel.engine.loader import load_pipeline

WARMUP_CALLS = 2


def run_sequential(workload: Workload, requests: int) -> list[float]:
    """Seconds taken by each of `requests` pipeline calls of one image, made as a script using
    diffusers directly would (default PIL output), on the device and dtype the server would pick."""
    device = best_device()
    pipe = load_pipeline(str(workload.pipeline_dir), device, dtype_for(device))

    def call(seed: int) -> None:
        generator = torch.Generator(device=device).manual_seed(seed)
        pipe(
            workload.prompt,
            num_inference_steps=workload.steps,
            guidance_scale=workload.guidance_scale,
            width=workload.side,
            height=workload.side,
            generator=generator,
        )
        if device.type == "cuda":
            torch.cuda.synchronize()

    for seed in range(WARMUP_CALLS):
        call(seed)
    latencies = []
    for seed in range(requests):
        begun = time.perf_counter()
        call(seed)
        latencies.append(time.perf_counter() - begun)
    del pipe
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return latencies
