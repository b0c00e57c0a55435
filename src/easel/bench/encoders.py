"""Milliseconds per 1024x1024 image on one thread (one core): every installed PNG encoder, each
output format as served (PNG, JPEG, WebP; opaque and transparent), and the background matte."""

from __future__ import annotations

import asyncio
import io
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from easel.bench import machine
from easel.bench.report import write_json
from easel.catalog.output import DEFAULT_COMPRESSION, IMAGE_FORMATS, ImageFormat
from easel.encoding.chunks import with_text
from easel.encoding.encoders import ENCODERS, available, serving_encoder
from easel.encoding.formats import encode_image

SIDE = 1024
# Every encoder gets the same text chunks a served image carries.
_TEXT = {"prompt": "a lighthouse at dawn", "seed": "12345", "model": "dall-e-2"}


def test_image() -> tuple[np.ndarray, str]:
    """A photograph (matplotlib's sample, when installed) at 1024x1024: PNG cost depends on content,
    and noise or flat colour would flatter or punish the encoders unrealistically."""
    try:
        import matplotlib

        path = Path(matplotlib.__file__).parent / "mpl-data" / "sample_data" / "grace_hopper.jpg"
        photo = Image.open(path).convert("RGB").resize((SIDE, SIDE), Image.Resampling.BICUBIC)
        return np.asarray(
            photo
        ), "matplotlib sample photograph grace_hopper.jpg, bicubic to 1024x1024"
    except (ImportError, OSError):
        y, x = np.mgrid[0:SIDE, 0:SIDE]
        smooth = np.stack([x / 4, y / 4, (x + y) / 8], axis=-1) % 256
        noise = np.random.default_rng(0).normal(0, 6, smooth.shape)
        return np.clip(smooth + noise, 0, 255).astype(np.uint8), "synthetic gradient with noise"


def _median_ms(work: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return round(float(np.median(times)) * 1000, 2)


# The lossy formats also at lower `output_compression` values: what each costs, beside the default.
COMPRESSIONS = (DEFAULT_COMPRESSION, 90, 80, 50)


def measure_formats(pixels: np.ndarray, repeats: int = 20) -> dict[str, Any]:
    """Each output format as a served image is encoded (the text as XMP or PNG chunks), opaque
    (RGB) and transparent (RGBA, png and webp only): at the default `output_compression`, and the
    opaque lossy formats at each of COMPRESSIONS too (`"webp opaque 80"`)."""
    alpha = np.linspace(0, 255, pixels.shape[1], dtype=np.uint8)[np.newaxis].repeat(SIDE, axis=0)
    variants = {"opaque": pixels, "transparent": np.dstack((pixels, alpha))}
    cases: list[tuple[str, np.ndarray, ImageFormat, int]] = []
    for background, image in variants.items():
        for image_format in IMAGE_FORMATS:
            if background == "transparent" and image_format == "jpeg":
                continue
            name = f"{image_format} {background}"
            cases.append((name, image, image_format, DEFAULT_COMPRESSION))
            if background == "opaque" and image_format != "png":
                cases += [
                    (f"{name} {level}", image, image_format, level) for level in COMPRESSIONS[1:]
                ]
    results: dict[str, Any] = {}
    for name, image, image_format, compression in cases:

        def encode(
            image: np.ndarray = image,
            image_format: ImageFormat = image_format,
            compression: int = compression,
        ) -> bytes:
            return encode_image(image, _TEXT, image_format, compression)

        results[name] = {"median_ms": _median_ms(encode, repeats), "bytes": len(encode())}
    png_ms = results["png opaque"]["median_ms"]
    for entry in results.values():
        entry["within_png_cost"] = entry["median_ms"] <= png_ms
    return results


def measure_matting(pixels: np.ndarray, repeats: int = 5) -> dict[str, Any]:
    """What cutting out one 1024x1024 image costs on the CPU with the tiny random-weight matting
    model (the real BiRefNet costs far more: this measures Easel's pre- and post-processing)."""
    import torch

    from easel.devtools.tiny_pipelines import build_tiny_matting
    from easel.engine.matting import MattingModel

    with tempfile.TemporaryDirectory(prefix="easel-matting-") as tmp:
        model = MattingModel(str(build_tiny_matting(Path(tmp))), torch.device("cpu"))

        def cut_out() -> None:
            asyncio.run(model.cut_out([pixels]))

        cut_out()  # loads the model
        return {
            "model": "tiny random-weight BiRefNet stand-in",
            "median_ms": _median_ms(cut_out, repeats),
        }


def measure(repeats: int = 20) -> dict[str, Any]:
    pixels, source = test_image()
    installed = available()
    results: dict[str, Any] = {}
    for info in ENCODERS:
        encoder = installed.get(info.name)
        if encoder is None:
            results[info.name] = {"description": info.description, "installed": False}
            continue
        png = with_text(encoder(pixels), _TEXT)  # warm-up, and the output to check
        decoded = Image.open(io.BytesIO(png))
        decoded.load()
        lossless = decoded.size == (SIDE, SIDE) and bool(
            np.array_equal(np.asarray(decoded), pixels)
        )
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            with_text(encoder(pixels), _TEXT)
            times.append(time.perf_counter() - started)
        results[info.name] = {
            "description": info.description,
            "installed": True,
            "median_ms": round(float(np.median(times)) * 1000, 2),
            "min_ms": round(min(times) * 1000, 2),
            "bytes": len(png),
            "decodes_losslessly_with_pillow": lossless,
        }
    return {
        "image": source,
        "size": f"{SIDE}x{SIDE}",
        "serving_encoder": serving_encoder()[0],
        "encoders": results,
        "formats": measure_formats(pixels, repeats),
        "matting": measure_matting(pixels),
    }


def run(out_dir: Path, say: Callable[[str], None]) -> Path:
    """Measure and write `encoders-formats-<machine>.json` under `out_dir`; returns its path."""
    described = machine.describe()
    say(f"Machine: {described['cpu']}, {described['cores']} cores, GPU {described['gpu']}")
    results = {"machine": described, "encoding": measure()}
    for line in summary(results["encoding"]):
        say(line)
    path = out_dir / f"encoders-formats-{machine.slug(described)}.json"
    write_json(results, path)
    return path


def summary(results: dict[str, Any]) -> list[str]:
    """One line per measurement of `measure`'s results, for the benchmark's log."""
    lines = [
        f"  {name}: {entry['median_ms']} ms, {entry['bytes']} bytes"
        for name, entry in results["encoders"].items()
        if entry["installed"]
    ]
    lines.append("Output formats as served, 1024x1024, one thread")
    lines += [
        f"  {name}: {entry['median_ms']} ms, {entry['bytes']} bytes"
        for name, entry in results["formats"].items()
    ]
    lines.append(f"Background matte, 1024x1024 on the CPU: {results['matting']['median_ms']} ms")
    return lines
