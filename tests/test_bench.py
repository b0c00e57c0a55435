"""`easel bench` pieces that run fast: argument checks, machine naming, the chart, target checks.
The benchmark itself is a command, not a test (its numbers live in bench/results/)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from PIL import Image

from easel.bench.machine import describe, slug
from easel.bench.report import draw_chart, write_json
from easel.bench.runner import targets


def sample_results() -> dict[str, object]:
    runs = [
        {
            "concurrency": c,
            "images_per_second": ips,
            "ratio_to_raw": ips / 4.0,
            "p50_ms": p50,
            "p95_ms": p50 * 1.5,
            "raw_images_per_second_around": 4.0,
        }
        for c, ips, p50 in [(1, 3.9, 250.0), (4, 6.5, 600.0), (16, 7.9, 2000.0), (64, 8.1, 7900.0)]
    ]
    return {
        "machine": describe(),
        "encoding": {"serving_encoder": "fpng", "encoders": {"fpng": {"median_ms": 5.0}}},
        "workloads": [
            {"name": "tiny", "raw": {"images_per_second": 4.0, "p50_ms": 250.0}, "easel": runs}
        ],
    }


def test_chart_and_json_are_written(tmp_path: Path) -> None:
    results = sample_results()
    draw_chart(results, tmp_path / "chart.png")
    write_json(results, tmp_path / "results.json")
    with Image.open(tmp_path / "chart.png") as chart:
        assert chart.format == "PNG" and chart.width > 600
    assert '"concurrency": 64' in (tmp_path / "results.json").read_text()


def test_targets_are_checked_from_the_ratios() -> None:
    checks = targets(sample_results())
    assert checks == {
        "tiny: ratio at 1 >= 0.95": True,  # 3.9 / 4.0
        "tiny: ratio at 16 >= 1.5": True,  # 7.9 / 4.0
        "PNG encode (fpng) <= 15.0 ms": True,
    }


def test_machine_is_named_in_file_names() -> None:
    machine = describe()
    assert machine["cores"] and machine["torch"]
    assert slug({"gpu": None, "cpu": "AMD EPYC 7B13", "cores": 2}) == "amd-epyc-7b13-2cores"
    assert (
        slug({"gpu": "NVIDIA H100 80GB HBM3", "cpu": "x", "cores": 16}) == "nvidia-h100-80gb-hbm3"
    )


def test_bad_concurrency_is_refused(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "easel", "bench", "--concurrency", "1,x", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "--concurrency expects numbers" in result.stderr
