"""Running the whole benchmark in one go: encoders, then per workload raw vs Easel."""

from __future__ import annotations

import datetime
import math
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

# Parts each concurrency level is run in, with raw blocks between them.
SEGMENTS = 4

# Alternating blocks of plain and serving-layout calls, and calls per block.
LAYOUT_ROUNDS = 4
LAYOUT_CALLS = 8

# Targets from the issue, checked (not asserted) in the results.
TARGET_RATIO_AT_1 = 0.95
TARGET_RATIO_AT_16 = 1.5
TARGET_ENCODE_MS = 15.0


def cpu_workloads(root: Path) -> list[Workload]:
    """The tiny SD 1.x-layout pipeline at its native 256 px, 4 steps without guidance."""
    return [
        Workload(
            "tiny-sd-256px-4steps",
            build_tiny_sd(root / "tiny-sd"),
            side=256,
            steps=4,
            guidance_scale=0.0,
        )
    ]


def measure_workload(
    workload: Workload,
    levels: Sequence[int],
    requests_per_client: int,
    min_requests: int,
    raw_requests: int,
    root: Path,
    say: Say,
) -> dict[str, Any]:
    """Each level runs in SEGMENTS parts with raw calls before, between and after them, each raw
    block lasting as long as the Easel part before it, and its ratio is taken against those blocks:
    on a shared machine whose background load changes by the minute, both sides then sample the
    same conditions for the same time."""
    raw_per_block = raw_requests
    raw_pipeline = raw.RawPipeline(workload)
    every_raw: list[float] = []
    runs = []
    try:
        with http_load.easel_server(workload, root / f"data-{workload.name}") as server:
            for level in levels:
                requests = max(min_requests, level * requests_per_client)
                per_segment = max(level, math.ceil(requests / SEGMENTS))
                say(
                    f"[{workload.name}] {level} clients: {SEGMENTS} x {per_segment} requests "
                    "over HTTP, raw calls around them"
                )
                easel_load = http_load.LoadRun()
                raw_latencies = raw_pipeline.run(raw_per_block)
                for _ in range(SEGMENTS):
                    segment = http_load.run_clients(server, workload, level, per_segment)
                    easel_load.add(segment)
                    raw_latencies += raw_pipeline.run_for(segment.seconds)
                every_raw += raw_latencies
                run = easel_load.summary()
                run["concurrency"] = level
                run["raw_images_per_second_around"] = _rate(raw_latencies)
                run["ratio_to_raw"] = round(run["images_per_second"] / _rate(raw_latencies), 3)
                say(
                    f"  {run['images_per_second']} images/s vs raw {_rate(raw_latencies)}: "
                    f"{run['ratio_to_raw']}x; p50 {run['p50_ms']} ms, p95 {run['p95_ms']} ms, "
                    f"mean batch {run['mean_batch_images']}"
                )
                runs.append(run)
    finally:
        raw_pipeline.close()
    baseline = RunSummary.of(every_raw, len(every_raw), sum(every_raw)).as_dict()
    layout = measure_layout(workload, say)
    return {
        "name": workload.name,
        "pipeline": str(workload.pipeline_dir.name),
        "size": workload.size,
        "steps": workload.steps,
        "guidance_scale": workload.guidance_scale,
        "raw": baseline,
        "layout": layout,
        "easel": runs,
    }


def measure_layout(workload: Workload, say: Say) -> dict[str, Any]:
    """How much of Easel's lead comes from the weight layout alone: one image per call, the plain
    pipeline against the same pipeline in the serving layout, in alternating blocks."""
    plain, tuned = raw.RawPipeline(workload), raw.RawPipeline(workload, serving_layout=True)
    plain_latencies: list[float] = []
    tuned_latencies: list[float] = []
    try:
        for _ in range(LAYOUT_ROUNDS):
            plain_latencies += plain.run(LAYOUT_CALLS)
            tuned_latencies += tuned.run(LAYOUT_CALLS)
    finally:
        plain.close()
        tuned.close()
    result = {
        "plain_images_per_second": _rate(plain_latencies),
        "serving_layout_images_per_second": _rate(tuned_latencies),
        "ratio": round(_rate(tuned_latencies) / _rate(plain_latencies), 3),
    }
    say(
        f"[{workload.name}] one image per call: serving layout "
        f"{result['serving_layout_images_per_second']} images/s "
        f"vs plain {result['plain_images_per_second']}: {result['ratio']}x"
    )
    return result


def _rate(latencies: list[float]) -> float:
    return round(len(latencies) / sum(latencies), 3)


def targets(results: dict[str, Any]) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    for workload in results["workloads"]:
        by_level = {run["concurrency"]: run["ratio_to_raw"] for run in workload["easel"]}
        if 1 in by_level:
            checks[f"{workload['name']}: ratio at 1 >= {TARGET_RATIO_AT_1}"] = (
                by_level[1] >= TARGET_RATIO_AT_1
            )
        if 16 in by_level:
            checks[f"{workload['name']}: ratio at 16 >= {TARGET_RATIO_AT_16}"] = (
                by_level[16] >= TARGET_RATIO_AT_16
            )
    serving = results["encoding"]["serving_encoder"]
    encode_ms = results["encoding"]["encoders"][serving]["median_ms"]
    checks[f"PNG encode ({serving}) <= {TARGET_ENCODE_MS} ms"] = encode_ms <= TARGET_ENCODE_MS
    return checks


def run_all(
    out_dir: Path,
    levels: Sequence[int],
    requests_per_client: int,
    min_requests: int,
    raw_requests: int,
    gpu: bool,
    say: Say,
) -> tuple[dict[str, Any], Path, Path]:
    described = machine.describe()
    say(
        f"Machine: {described['cpu']}, {described['cores']} cores, GPU {described['gpu']}, "
        f"torch {described['torch']}"
    )
    say("PNG encoders, 1024x1024, one thread")
    encoding = encoders.measure()
    for line in encoders.summary(encoding):
        say(line)
    results: dict[str, Any] = {
        "machine": described,
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
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
                measure_workload(
                    workload, levels, requests_per_client, min_requests, raw_requests, root, say
                )
            )
    results["targets"] = targets(results)
    stem = f"bench-{machine.slug(described)}"
    json_path, chart_path = out_dir / f"{stem}.json", out_dir / f"{stem}.png"
    from easel.bench.report import draw_chart, write_json

    write_json(results, json_path)
    draw_chart(results, chart_path)
    return results, json_path, chart_path
