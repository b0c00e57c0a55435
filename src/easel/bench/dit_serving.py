"""The DiT path on any machine: the tiny Z-Image pipeline served by `easel serve` against the same
pipeline called directly, one image at a time at the same size and steps: images/s each, and the
server's overhead as the ratio of its seconds per image to the raw call's."""

from __future__ import annotations

import datetime
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from easel.bench import http_load, machine, raw
from easel.bench.report import write_json
from easel.bench.stats import RunSummary
from easel.bench.workload import Workload
from easel.devtools.tiny_pipelines import build_tiny_zimage

Say = Callable[[str], None]

# Alternating blocks of raw calls and HTTP requests, so both sample the same background load of a
# shared machine; one client, so the server runs batch 1 like the raw calls.
ROUNDS = 4
CALLS_PER_ROUND = 6


def tiny_zimage_workload(root: Path) -> Workload:
    """The tiny Z-Image at its native 256 px, 4 steps without guidance (turbo settings)."""
    return Workload(
        "tiny-zimage-256px-4steps",
        build_tiny_zimage(root / "tiny-zimage"),
        side=256,
        steps=4,
        guidance_scale=0.0,
    )


def measure(
    workload: Workload, root: Path, say: Say, rounds: int = ROUNDS, calls: int = CALLS_PER_ROUND
) -> dict[str, Any]:
    raw_latencies: list[float] = []
    served = http_load.LoadRun()
    raw_pipeline = raw.RawPipeline(workload)
    try:
        with http_load.easel_server(workload, root / f"data-{workload.name}") as server:
            for round_index in range(rounds):
                raw_latencies += raw_pipeline.run(calls)
                served.add(http_load.run_clients(server, workload, 1, calls))
                say(f"  round {round_index + 1}/{rounds} done")
    finally:
        raw_pipeline.close()
    direct = RunSummary.of(raw_latencies, len(raw_latencies), sum(raw_latencies)).as_dict()
    easel = served.summary()
    result = {
        "name": workload.name,
        "size": workload.size,
        "steps": workload.steps,
        "batch": 1,
        "images_per_side": rounds * calls,
        "raw_images_per_second": direct["images_per_second"],
        "easel_images_per_second": easel["images_per_second"],
        # Above 1: each image costs that much longer through the server than called directly.
        "server_overhead_ratio": round(direct["images_per_second"] / easel["images_per_second"], 3),
        # The same ratio of median and of fastest latencies, which a shared machine's stalls
        # (seconds long on a busy one, on either side) move far less.
        "server_overhead_ratio_p50": round(easel["p50_ms"] / direct["p50_ms"], 3),
        "server_overhead_ratio_fastest": round(min(served.latencies) / min(raw_latencies), 3),
        "raw": direct,
        "easel": easel,
    }
    say(
        f"[{workload.name}] Easel over HTTP {result['easel_images_per_second']} images/s, raw "
        f"{result['raw_images_per_second']} images/s: overhead ratio "
        f"{result['server_overhead_ratio']} (of medians {result['server_overhead_ratio_p50']}, "
        f"of fastest {result['server_overhead_ratio_fastest']})"
    )
    return result


def run(out_dir: Path, say: Say) -> Path:
    """Measure on this machine and write `dit-serving-<machine>.json` under `out_dir`."""
    described = machine.describe()
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    load = os.getloadavg()[0]
    say(
        f"Machine: {described['cpu']}, {described['cores']} cores, torch {described['torch']}, "
        f"load average {load:.2f}"
    )
    with tempfile.TemporaryDirectory(prefix="easel-bench-dit-serving-") as tmp:
        root = Path(tmp)
        measured = measure(tiny_zimage_workload(root), root, say)
    results = {
        "machine": described,
        "started": started,
        # Other work on a shared machine moves these numbers; this says how much there was.
        "load_average_at_start": round(load, 2),
        **measured,
    }
    path = out_dir / f"dit-serving-{machine.slug(described)}.json"
    write_json(results, path)
    return path
