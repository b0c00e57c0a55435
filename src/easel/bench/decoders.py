"""The full VAE against the tiny decoder (TAESD) on the SD-Turbo architecture with random weights:
images per second and the share of each image spent decoding, one 512 px, 1-step image per call,
as the small-machine default serves it."""

from __future__ import annotations

import datetime
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, DiffusionPipeline

from easel.bench import machine
from easel.bench.architectures import build_sd_turbo, build_taesd
from easel.bench.report import write_json
from easel.engine.device import best_device, dtype_for
from easel.engine.loader import load_pipeline
from easel.engine.tuning import tune_for_serving

Say = Callable[[str], None]

SIDE = 512
STEPS = 1
PROMPT = "a lighthouse on a cliff at dawn, oil painting"
# Alternating blocks of calls per decoder, so both sample the same background load of a shared
# machine; one call per decoder warms up first.
ROUNDS = 4
CALLS_PER_ROUND = 1


class DecodeTimer:
    """Times every `decode` call of a pipeline's autoencoder, wrapping the instance's method."""

    def __init__(self, pipe: DiffusionPipeline, device: torch.device) -> None:
        self.seconds: list[float] = []
        vae = pipe.vae
        decode = vae.decode

        def timed(*args: Any, **kwargs: Any) -> Any:
            begun = time.perf_counter()
            result = decode(*args, **kwargs)
            if device.type == "cuda":
                torch.cuda.synchronize()
            self.seconds.append(time.perf_counter() - begun)
            return result

        vae.decode = timed


def _call(pipe: DiffusionPipeline, device: torch.device, seed: int) -> float:
    begun = time.perf_counter()
    pipe(
        PROMPT,
        num_inference_steps=STEPS,
        guidance_scale=0.0,
        width=SIDE,
        height=SIDE,
        generator=torch.Generator(device=device).manual_seed(seed),
    )
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - begun


def measure(root: Path, say: Say) -> dict[str, Any]:
    """Both decoders on one loaded SD-Turbo pipeline (they share its UNet and text encoder), in the
    server's weight layout."""
    device = best_device()
    dtype = dtype_for(device)
    say(f"Building the SD-Turbo architecture and TAESD with random weights ({dtype}) ...")
    pipeline_dir = build_sd_turbo(root / "sd-turbo", dtype, device)
    decoder_dir = build_taesd(root / "taesd", dtype)
    tiny = load_pipeline(str(pipeline_dir), device, dtype, decoder=str(decoder_dir))
    full_vae = AutoencoderKL.from_pretrained(pipeline_dir / "vae", dtype=dtype).to(device)
    pipelines = {"full VAE": type(tiny).from_pipe(tiny, vae=full_vae), "TAESD": tiny}
    timers = {}
    for pipe in pipelines.values():
        tune_for_serving(pipe)
        pipe.set_progress_bar_config(disable=True)
        _call(pipe, device, seed=0)
    for name, pipe in pipelines.items():
        timers[name] = DecodeTimer(pipe, device)
    latencies: dict[str, list[float]] = {name: [] for name in pipelines}
    for round_index in range(ROUNDS):
        for name, pipe in pipelines.items():
            for call in range(CALLS_PER_ROUND):
                latencies[name].append(_call(pipe, device, seed=1 + round_index * 10 + call))
        say(f"  round {round_index + 1}/{ROUNDS} done")
    results: dict[str, Any] = {}
    for name, seconds in latencies.items():
        decode = timers[name].seconds
        results[name] = {
            "images_per_second": round(len(seconds) / sum(seconds), 3),
            "median_image_ms": round(statistics.median(seconds) * 1000, 1),
            "median_decode_ms": round(statistics.median(decode) * 1000, 1),
            "decode_share": round(sum(decode) / sum(seconds), 3),
        }
        say(
            f"  {name}: {results[name]['images_per_second']} images/s, decode "
            f"{results[name]['median_decode_ms']} ms = {results[name]['decode_share']:.0%} of "
            "each image"
        )
    speedup = results["TAESD"]["images_per_second"] / results["full VAE"]["images_per_second"]
    return {
        "architecture": "SD-Turbo (SD 2.1 UNet, OpenCLIP-H), random weights",
        "size": f"{SIDE}x{SIDE}",
        "steps": STEPS,
        "calls_per_decoder": ROUNDS * CALLS_PER_ROUND,
        "device": device.type,
        "dtype": str(dtype),
        "decoders": results,
        "taesd_speedup": round(speedup, 2),
    }


def run(out_dir: Path, say: Say) -> Path:
    """Measure and write `decoders-<machine>.json` under `out_dir`; returns its path."""
    described = machine.describe()
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    say(f"Machine: {described['cpu']}, {described['cores']} cores, GPU {described['gpu']}")
    with tempfile.TemporaryDirectory(prefix="easel-bench-decoders-") as tmp:
        measured = measure(Path(tmp), say)
    results = {"machine": described, "started": started, **measured}
    path = out_dir / f"decoders-{machine.slug(described)}.json"
    write_json(results, path)
    return path
