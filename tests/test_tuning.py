"""The serving layout: the engine's pipelines hold convolution weights channels-last, and the
images they make match the untouched diffusers pipeline's."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import torch

from easel.catalog import Catalog
from easel.engine.engine import Engine
from easel.engine.generate import to_uint8
from easel.engine.loader import load_pipeline
from easel.engine.tuning import tune_for_serving
from easel.settings import Settings


def images(pipe: torch.nn.Module, seed: int) -> np.ndarray:
    with torch.inference_mode():
        out = pipe(
            ["a red boat", "a green hill"],
            num_inference_steps=3,
            guidance_scale=0.0,
            generator=[torch.Generator().manual_seed(seed + i) for i in range(2)],
            output_type="pt",
        ).images
    return np.stack(to_uint8(out, out.shape[-1], out.shape[-2])).astype(np.int16)


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["tiny_sd", "tiny_sdxl"])
def test_channels_last_makes_the_same_images(layout: str, request: pytest.FixtureRequest) -> None:
    directory: Path = request.getfixturevalue(layout)
    plain = load_pipeline(str(directory), torch.device("cpu"), torch.float32)
    tuned = load_pipeline(str(directory), torch.device("cpu"), torch.float32)
    changed = tune_for_serving(tuned)
    assert "unet" in changed and "vae" in changed
    assert not any("text_encoder" in name for name in changed)  # no convolutions there
    assert tuned.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert not plain.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    difference = np.abs(images(plain, 7) - images(tuned, 7))
    # Summation order differs between layouts: at most one level in a few pixels.
    assert difference.max() <= 1
    assert (difference > 0).mean() < 0.01


def test_engine_serves_the_tuned_pipeline(tiny_sd: Path) -> None:
    engine = Engine(
        Catalog.build(None, [f"dall-e-2={tiny_sd}"]), config=Settings().scheduler_config()
    )
    try:
        pipe = engine.pipeline("dall-e-2")
    finally:
        asyncio.run(engine.shutdown())
    assert pipe.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert pipe.vae.decoder.conv_out.weight.is_contiguous(memory_format=torch.channels_last)
