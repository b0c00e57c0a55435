"""Writing results: a JSON document and a chart of throughput and latency against concurrency."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_json(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")


def draw_chart(results: dict[str, Any], path: Path) -> None:
    """One row per workload: images/s (Easel and the raw line) and p50/p95 latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    workloads = results["workloads"]
    figure, axes = plt.subplots(
        len(workloads), 2, figsize=(11, 4.2 * len(workloads)), squeeze=False
    )
    for row, workload in enumerate(workloads):
        levels = [entry["concurrency"] for entry in workload["easel"]]
        throughput, latency = axes[row]
        throughput.plot(
            levels,
            [e["images_per_second"] for e in workload["easel"]],
            "o-",
            label="Easel over HTTP",
        )
        # Raw throughput measured around each level (the machine's load may change between levels).
        throughput.plot(
            levels,
            [e["raw_images_per_second_around"] for e in workload["easel"]],
            "s--",
            color="grey",
            label="raw diffusers, sequential (around each level)",
        )
        for entry in workload["easel"]:
            throughput.annotate(
                f"{entry['ratio_to_raw']:.2f}x",
                (entry["concurrency"], entry["images_per_second"]),
                textcoords="offset points",
                xytext=(0, 7),
                ha="center",
                fontsize=8,
            )
        throughput.set(
            xlabel="concurrent clients", ylabel="images/s", title=f"{workload['name']}: throughput"
        )
        _concurrency_axis(throughput, levels, NullLocator)
        throughput.legend(fontsize=8)
        latency.plot(levels, [e["p50_ms"] for e in workload["easel"]], "o-", label="p50")
        latency.plot(levels, [e["p95_ms"] for e in workload["easel"]], "s--", label="p95")
        latency.axhline(workload["raw"]["p50_ms"], color="grey", linestyle=":", label="raw p50")
        latency.set(
            yscale="log",
            xlabel="concurrent clients",
            ylabel="latency (ms)",
            title=f"{workload['name']}: latency",
        )
        _concurrency_axis(latency, levels, NullLocator)
        latency.legend(fontsize=8)
    machine = results["machine"]
    figure.suptitle(
        f"easel bench on {machine['gpu'] or machine['cpu']} ({machine['cores']} cores), "
        f"torch {machine['torch']}",
        fontsize=10,
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _concurrency_axis(axis: Any, levels: list[int], null_locator: Any) -> None:
    axis.set_xscale("log", base=2)
    axis.xaxis.set_minor_locator(null_locator())
    axis.set_xticks(levels, [str(level) for level in levels])
