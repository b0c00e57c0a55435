"""Milliseconds per 1024x1024 PNG for every installed encoder, on one thread (one core)."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from easel.encoding.chunks import with_text
from easel.encoding.encoders import ENCODERS, available, serving_encoder

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
    }
