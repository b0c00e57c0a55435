"""The baseline: the diffusers pipeline called in-process, one request at a time."""

from __future__ import annotations

import time

import torch

from easel.bench.workload import Workload
from easel.engine.device import best_device, dtype_for
from easel.engine.loader import load_pipeline
from easel.engine.tuning import tune_for_serving

WARMUP_CALLS = 2


class RawPipeline:
    """The workload's pipeline, called as a script using diffusers directly would (one image per
    call, default PIL output), on the device and dtype the server would pick.
    `serving_layout` gives it the server's weight layout too (engine/tuning.py), to tell that gain
    from batching's."""

    def __init__(self, workload: Workload, serving_layout: bool = False) -> None:
        self.workload = workload
        self.device = best_device()
        self.pipe = load_pipeline(str(workload.pipeline_dir), self.device, dtype_for(self.device))
        if serving_layout:
            tune_for_serving(self.pipe)
        self._seed = 0
        self.run(WARMUP_CALLS)

    def run(self, requests: int) -> list[float]:
        """Seconds taken by each of `requests` sequential calls."""
        latencies = []
        for _ in range(requests):
            begun = time.perf_counter()
            self._call()
            latencies.append(time.perf_counter() - begun)
        return latencies

    def run_for(self, seconds: float) -> list[float]:
        """Sequential calls until `seconds` have passed (at least one call)."""
        latencies = self.run(1)
        while sum(latencies) < seconds:
            latencies += self.run(1)
        return latencies

    def close(self) -> None:
        del self.pipe
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _call(self) -> None:
        workload = self.workload
        self._seed += 1
        self.pipe(
            workload.prompt,
            num_inference_steps=workload.steps,
            guidance_scale=workload.guidance_scale,
            width=workload.side,
            height=workload.side,
            generator=torch.Generator(device=self.device).manual_seed(self._seed),
        )
        if self.device.type == "cuda":
            torch.cuda.synchronize()
