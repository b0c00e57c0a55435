"""`easel bench` pieces that run fast: argument checks, machine naming, the chart, target checks.
The benchmark itself is a command, not a test (its numbers live in bench/results/)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusers import Flux2KleinPipeline, ZImagePipeline
from PIL import Image

from easel.bench import dit_gpu, dit_serving, encoders
from easel.bench.dit_architectures import FLUX2_KLEIN_4B, REAL_ARCHITECTURES, ZIMAGE_TURBO, toy
from easel.bench.gpu import datasheet_peak
from easel.bench.machine import describe, slug
from easel.bench.report import draw_chart, write_json
from easel.bench.runner import targets
from easel.bench.workload import Workload


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


def test_datasheet_peak_names_the_card_cuda_reports() -> None:
    assert datasheet_peak("NVIDIA H100 80GB HBM3") == 989.4e12  # the SXM part
    assert datasheet_peak("NVIDIA H200") == 989.4e12
    assert datasheet_peak("NVIDIA GeForce RTX 3090") is None


def test_dit_serving_bench_reports_both_rates_and_the_ratio(
    tiny_zimage: Path, tmp_path: Path
) -> None:
    workload = Workload("tiny-zimage", tiny_zimage, side=256, steps=1, guidance_scale=0.0)
    result = dit_serving.measure(workload, tmp_path, lambda _: None, rounds=1, calls=1)
    assert result["raw_images_per_second"] > 0 and result["easel_images_per_second"] > 0
    assert result["server_overhead_ratio"] == pytest.approx(
        result["raw_images_per_second"] / result["easel_images_per_second"], rel=0.01
    )
    assert result["server_overhead_ratio_p50"] > 0 and result["server_overhead_ratio_fastest"] > 0
    assert result["easel"]["failures"] == {}


def test_real_dit_configs_are_the_published_sizes() -> None:
    assert ZIMAGE_TURBO.transformer["dim"] == 3840 and ZIMAGE_TURBO.transformer["n_layers"] == 30
    klein = FLUX2_KLEIN_4B.transformer
    assert (klein["num_layers"], klein["num_single_layers"]) == (5, 20)
    # klein conditions on three of the encoder's hidden states side by side.
    assert klein["joint_attention_dim"] == 3 * FLUX2_KLEIN_4B.text_encoder["hidden_size"]
    assert ZIMAGE_TURBO.transformer["cap_feat_dim"] == ZIMAGE_TURBO.text_encoder["hidden_size"]


def test_dit_architecture_builders_make_the_right_pipelines_at_toy_scale() -> None:
    classes = {
        type(toy(architecture).build(torch.float32, torch.device("cpu")))
        for architecture in REAL_ARCHITECTURES
    }
    assert classes == {ZImagePipeline, Flux2KleinPipeline}


def test_dit_gpu_bench_code_path_runs_on_cpu_at_toy_scale() -> None:
    """The CUDA benchmark's own measuring code, with toy configs, on CPU, compile off."""
    lines: list[str] = []
    results = dit_gpu.measure(
        [toy(architecture) for architecture in REAL_ARCHITECTURES],
        torch.device("cpu"),
        torch.float32,
        peak_flops=1e9,  # toy FLOPs against a toy peak, so the fraction is visible
        side=32,
        batches=(1, 2),
        compile_transformer=False,
        timed_calls=1,
        say=lines.append,
    )
    assert [entry["pipeline"] for entry in results] == ["ZImagePipeline", "Flux2KleinPipeline"]
    for entry in results:
        assert 0 < entry["transformer_flops_per_step"] <= entry["flops_per_image"]
        assert [(run["variant"], run["batch"]) for run in entry["runs"]] == [
            ("plain", 1),
            ("plain", 2),
        ]
        assert all(run["images_per_second"] > 0 and run["mfu"] > 0 for run in entry["runs"])
    assert any("published: 0.57 s" in line for line in lines)


def test_flops_of_one_step_are_counted_on_cpu() -> None:
    architecture = toy(ZIMAGE_TURBO)
    pipe = architecture.build(torch.float32, torch.device("cpu"))
    one_step = dit_gpu.count_flops(pipe, architecture, side=32, steps=1)
    three_steps = dit_gpu.count_flops(pipe, architecture, side=32, steps=3)
    assert one_step.per_step > 0
    assert three_steps.per_image == pytest.approx(one_step.per_image + 2 * one_step.per_step)


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA"
)
def test_dit_gpu_bench_refuses_without_cuda(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "easel", "bench", "--dit-gpu", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert "needs a CUDA GPU" in " ".join(result.stderr.split())
    assert not list(tmp_path.iterdir())


def test_each_output_format_is_timed_and_the_lossy_ones_at_each_compression() -> None:
    pixels, _ = encoders.test_image()
    results = encoders.measure_formats(pixels, repeats=1)
    levels = [f" {level}" for level in encoders.COMPRESSIONS[1:]]
    lossy = [f"{name} opaque{level}" for name in ("jpeg", "webp") for level in ["", *levels]]
    assert set(results) == {"png opaque", "png transparent", "webp transparent", *lossy}
    assert all(entry["median_ms"] > 0 and entry["bytes"] > 0 for entry in results.values())
    # Less detail kept, fewer bytes: each compression value reached the encoder.
    webp = [results[name]["bytes"] for name in lossy if name.startswith("webp")]
    assert webp == sorted(webp, reverse=True)
    assert results["png opaque"]["within_png_cost"]
