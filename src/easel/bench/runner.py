"""Running the whole benchmark in one go: encoders, then per workload raw vs Easel."""

from __future__ import annotations

import datetime
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from easel.bench import encoders, http_load, machine, raw
from easel.bench.stats import RunSummary
from easel.bench.workload import Workload
from easel.devtools.tiny_pipelines import build_tiny_sd

Say = Callable[[str], None]

# Targets from the issue, checked (not asserted) in the results.
TARGET_RATIO_AT_1 = 0.95
TARGET_RATIO_AT_16 = 1.5
TARGET_ENCODE_MS = 15.0


def cpu_workloads(root: Path) -> list[Workload]:
    """The tiny SD 1.x-layout pipeline at its native 256 px, 4 steps without guidance."""
    return [Workload("tiny-sd-256px-4steps", build_tiny_sd(root / "tiny-sd"), side=256, steps=4, guidance_scale=0.0)]


def measure_workload(
    workload: Workload, levels: Sequence[int], requests_per_client: int, min_requests: int,
    raw_requests: int, root: Path, say: Say,
) -> dict[str, Any]:
    """Raw blocks and Easel levels alternate (raw, level 1, raw, level 4, ...): each level's ratio
    is taken against the raw blocks on either side of it, so both see the same background load
    on a shared machine; all raw blocks together give the overall baseline."""
    block = max(1, raw_requests // (len(levels) + 1))
    raw_pipeline = raw.RawPipeline(workload)
    blocks: list[list[float]] = []

    def raw_block() -> None:
        say(f"[{workload.name}] raw diffusers, {block} sequential requests")
        blocks.append(raw_pipeline.run(block))
        say(f"  {_rate(blocks[-1])} images/s")

    runs = []
    try:
        with http_load.easel_server(workload, root / f"data-{workload.name}") as server:
            raw_block()
            for level in levels:
                requests = max(min_requests, level * requests_per_client)
                say(f"[{workload.name}] Easel over HTTP, {level} clients, {requests} requests")
                run = http_load.run_clients(server, workload, level, requests)
                raw_block()
                around = blocks[-2] + blocks[-1]
                run["concurrency"] = level
                run["raw_images_per_second_around"] = _rate(around)
                run["ratio_to_raw"] = round(run["images_per_second"] / _rate(around), 3)
                say(f"  {run['images_per_second']} images/s ({run['ratio_to_raw']}x raw), p50 "
                    f"{run['p50_ms']} ms, p95 {run['p95_ms']} ms, mean batch {run['mean_batch_images']}")
                runs.append(run)
    finally:
        raw_pipeline.close()
    every = [latency for latencies in blocks for latency in latencies]
    baseline = RunSummary.of(every, len(every), sum(every)).as_dict()
    baseline["blocks_images_per_second"] = [_rate(latencies) for latencies in blocks]
    return {
        "name": workload.name,
        "pipeline": str(workload.pipeline_dir.name),
        "size": workload.size,
        "steps": workload.steps,
        "guidance_scale": workload.guidance_scale,
        "raw": baseline,
        "easel": runs,
    }


def _rate(latencies: list[float]) -> float:
    return round(len(latencies) / sum(latencies), 3)


def targets(results: dict[str, Any]) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    for workload in results["workloads"]:
        by_level = {run["concurrency"]: run["ratio_to_raw"] for run in workload["easel"]}
        if 1 in by_level:
            checks[f"{workload['name']}: ratio at 1 >= {TARGET_RATIO_AT_1}"] = by_level[1] >= TARGET_RATIO_AT_1
        if 16 in by_level:
            checks[f"{workload['name']}: ratio at 16 >= {TARGET_RATIO_AT_16}"] = by_level[16] >= TARGET_RATIO_AT_16
    serving = results["encoding"]["serving_encoder"]
    encode_ms = results["encoding"]["encoders"][serving]["median_ms"]
    checks[f"PNG encode ({serving}) <= {TARGET_ENCODE_MS} ms"] = encode_ms <= TARGET_ENCODE_MS
    return checks


def run_all(
    out_dir: Path, levels: Sequence[int], requests_per_client: int, min_requests: int, raw_requests: int,
    gpu: bool, say: Say,
) -> tuple[dict[str, Any], Path, Path]:
    described = machine.describe()
    say(f"Machine: {described['cpu']}, {described['cores']} cores, GPU {described['gpu']}, torch {described['torch']}")
    say("PNG encoders, 1024x1024, one thread")
    encoding = encoders.measure()
    for name, entry in encoding["encoders"].items():
        if entry["installed"]:
            say(f"  {name}: {entry['median_ms']} ms, {entry['bytes']} bytes")
    results: dict[str, Any] = {
        "machine": described,
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "encoding": encoding,
        "workloads": [],
    }
    with tempfile.TemporaryDirectory(prefix="easel-bench-") as tmp:
        root = Path(tmp)
        workloads = cpu_workloads(root)
        if gpu and torch.cuda.is_available():
            from easel.bench import gpu as gpu_bench

            results["gpu"] = gpu_bench.measure_architectures(root, say)
            workloads = gpu_bench.workloads(root)
        for workload in workloads:
            results["workloads"].append(
                measure_workload(workload, levels, requests_per_client, min_requests, raw_requests, root, say)
            )
    results["targets"] = targets(results)
    stem = f"bench-{machine.slug(described)}"
    json_path, chart_path = out_dir / f"{stem}.json", out_dir / f"{stem}.png"
    from easel.bench.report import draw_chart, write_json

    write_json(results, json_path)
    draw_chart(results, chart_path)
    return results, json_path, chart_path
