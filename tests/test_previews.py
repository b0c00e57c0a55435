"""Partial images of spatial latents (SD, Z-Image, SD with a TAESD decoder, Sana) and of latents
packed into 2x2 patches (FLUX.2 klein, Qwen-Image, FLUX.1): the layout turns a pipeline's latents
into exactly what its decoder reads, the fitted projection shows what the decoder makes of them,
and a stream through the official openai SDK carries real previews on the packed families."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers import (
    AutoencoderDC,
    AutoencoderKL,
    AutoencoderKLFlux2,
    AutoencoderKLQwenImage,
    DiffusionPipeline,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    SanaPipeline,
    SanaTransformer2DModel,
)
from openai.types import ImageGenCompletedEvent, ImageGenPartialImageEvent, ImageGenStreamEvent

from easel.catalog import Catalog
from easel.engine.engine import Engine
from easel.engine.latent_layouts import decoded, decoder_input, encoded
from easel.engine.loader import load_pipeline
from easel.engine.previews import projection_for
from easel.engine.types import PreviewRequest
from easel.settings import Settings
from tests.inprocess import InProcessApp, running_app
from tests.test_streaming import QUALITIES, pixels

# Pipelines on disk by fixture, with the decoder that replaces their own autoencoder, if any.
ON_DISK: dict[str, tuple[str, str | None]] = {
    "flux2-klein": ("tiny_flux2_klein", None),
    "qwen-image": ("tiny_qwen_image", None),
    "sd": ("tiny_sd", None),
    "sd-taesd": ("tiny_sd", "tiny_taesd"),
    "z-image": ("tiny_zimage", None),
}
# Families no fixture builds, as pipelines without text encoders (prompt embeddings are passed).
CAPTION_DIM = 32
IN_MEMORY = ("flux.1", "sana")
LAYOUTS = sorted([*ON_DISK, *IN_MEMORY])
# Not square, so rows and columns swapped cannot unpack to the pipeline's image.
WIDTH, HEIGHT = 96, 64


def loaded(layout: str, request: pytest.FixtureRequest) -> DiffusionPipeline:
    if layout == "flux.1":
        pipe = flux1_pipeline()
    elif layout == "sana":
        pipe = sana_pipeline()
    else:
        fixture, decoder = ON_DISK[layout]
        source: Path = request.getfixturevalue(fixture)
        decoder_dir = None if decoder is None else str(request.getfixturevalue(decoder))
        pipe = load_pipeline(str(source), torch.device("cpu"), torch.float32, decoder=decoder_dir)
    with_statistics(pipe.vae)
    return pipe


def flux1_pipeline() -> DiffusionPipeline:
    """FLUX.1's layout: 2x2 patches of an `AutoencoderKL` with a scale and a shift."""
    torch.manual_seed(0)
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=AutoencoderKL(
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            block_out_channels=(8, 16),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=4,
            scaling_factor=0.3611,
            shift_factor=0.1159,
        ),
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=None,
        tokenizer_2=None,
        transformer=FluxTransformer2DModel(
            in_channels=16,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=1,
            joint_attention_dim=CAPTION_DIM,
            pooled_projection_dim=CAPTION_DIM,
            axes_dims_rope=(4, 6, 6),
        ),
    )


def sana_pipeline() -> DiffusionPipeline:
    """Sana's layout: spatial latents of an `AutoencoderDC` with a scale."""
    torch.manual_seed(0)
    return SanaPipeline(
        tokenizer=None,
        text_encoder=None,
        vae=AutoencoderDC(
            latent_channels=8,
            attention_head_dim=4,
            encoder_block_types=("ResBlock", "EfficientViTBlock"),
            decoder_block_types=("ResBlock", "EfficientViTBlock"),
            encoder_block_out_channels=(8, 16),
            decoder_block_out_channels=(8, 16),
            encoder_layers_per_block=(1, 1),
            decoder_layers_per_block=(1, 1),
            encoder_qkv_multiscales=((), (5,)),
            decoder_qkv_multiscales=((), (5,)),
            scaling_factor=0.41407,
        ),
        transformer=SanaTransformer2DModel(
            in_channels=8,
            out_channels=8,
            num_attention_heads=1,
            attention_head_dim=16,
            num_layers=1,
            num_cross_attention_heads=1,
            cross_attention_head_dim=16,
            cross_attention_dim=16,
            caption_channels=CAPTION_DIM,
        ),
        scheduler=FlowMatchEulerDiscreteScheduler(),
    )


def prompt_arguments(layout: str) -> dict[str, Any]:
    """Two prompts, as text or, for the pipelines without text encoders, as embeddings."""
    embeddings = torch.randn(2, 8, CAPTION_DIM, generator=torch.Generator().manual_seed(1))
    if layout == "flux.1":
        return {"prompt_embeds": embeddings, "pooled_prompt_embeds": embeddings[:, 0]}
    if layout == "sana":
        return {
            "prompt_embeds": embeddings,
            "prompt_attention_mask": torch.ones(2, 8, dtype=torch.long),
            "use_resolution_binning": False,
        }
    return {"prompt": ["a lighthouse", "a kite"]}


def with_statistics(vae: object) -> None:
    """Give the tiny packed autoencoders' normalisation statistics values other than the identity
    they are built with (mean 0, std 1), so a layout that skipped them could not pass."""
    generator = torch.Generator().manual_seed(3)
    if isinstance(vae, AutoencoderKLFlux2):
        shape = vae.bn.running_mean.shape
        vae.bn.running_mean.copy_(torch.randn(shape, generator=generator) * 0.5)
        vae.bn.running_var.copy_(torch.rand(shape, generator=generator) + 0.5)
    elif isinstance(vae, AutoencoderKLQwenImage):
        channels = vae.config.z_dim
        vae.register_to_config(
            latents_mean=(torch.randn(channels, generator=generator) * 0.5).tolist(),
            latents_std=(torch.rand(channels, generator=generator) + 0.5).tolist(),
        )


def to_pixels(images: torch.Tensor) -> torch.Tensor:
    """A decoder's -1..1 output as the pipelines' 0..1 images."""
    return (images / 2 + 0.5).clamp(0, 1)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_last_steps_latents_decode_to_the_pipelines_own_images(
    layout: str, request: pytest.FixtureRequest
) -> None:
    pipe = loaded(layout, request)
    last: dict[str, torch.Tensor] = {}

    def keep_latents(
        _pipe: DiffusionPipeline, _step: int, _timestep: object, tensors: dict[str, Any]
    ) -> dict[str, Any]:
        last["latents"] = tensors["latents"].clone()
        return tensors

    with torch.inference_mode():
        images = pipe(
            **prompt_arguments(layout),
            num_inference_steps=2,
            guidance_scale=0.0,
            width=WIDTH,
            height=HEIGHT,
            generator=torch.Generator().manual_seed(0),
            output_type="pt",
            callback_on_step_end=keep_latents,
        ).images
        latents = decoder_input(pipe, last["latents"], WIDTH, HEIGHT)
        assert latents is not None
        ours = decoded(pipe.vae, latents)
    assert ours is not None
    assert images.shape == (2, 3, HEIGHT, WIDTH)
    torch.testing.assert_close(to_pixels(ours), images, rtol=0, atol=1e-5)


# Each family's latents for images its autoencoder encoded (decoder space), brought into the
# layout its pipeline denoises in: with the pipeline's own code where it has some.
def _flux2_denoised(pipe: DiffusionPipeline, latents: torch.Tensor) -> torch.Tensor:
    mean = pipe.vae.bn.running_mean.view(1, -1, 1, 1)
    std = torch.sqrt(pipe.vae.bn.running_var.view(1, -1, 1, 1) + pipe.vae.config.batch_norm_eps)
    packed: torch.Tensor = pipe._pack_latents((pipe._patchify_latents(latents) - mean) / std)
    return packed


def _qwen_denoised(pipe: DiffusionPipeline, latents: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(pipe.vae.config.latents_mean).view(1, -1, 1, 1)
    std = torch.tensor(pipe.vae.config.latents_std).view(1, -1, 1, 1)
    batch, channels, height, width = latents.shape
    packed: torch.Tensor = pipe._pack_latents(
        (latents - mean) / std, batch, channels, height, width
    )
    return packed


def _scaled(pipe: DiffusionPipeline, latents: torch.Tensor) -> torch.Tensor:
    config = pipe.vae.config
    shift: float = getattr(config, "shift_factor", None) or 0.0
    scale: float = config.scaling_factor
    return (latents - shift) * scale


def _flux1_denoised(pipe: DiffusionPipeline, latents: torch.Tensor) -> torch.Tensor:
    batch, channels, height, width = latents.shape
    packed: torch.Tensor = pipe._pack_latents(
        _scaled(pipe, latents), batch, channels, height, width
    )
    return packed


DENOISED: dict[str, Callable[[DiffusionPipeline, torch.Tensor], torch.Tensor]] = {
    "flux.1": _flux1_denoised,
    "flux2-klein": _flux2_denoised,
    "qwen-image": _qwen_denoised,
    "sd": _scaled,
    "sana": _scaled,
    "sd-taesd": _scaled,
    "z-image": _scaled,
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_preview_follows_what_the_decoder_makes_of_the_latents(
    layout: str, request: pytest.FixtureRequest
) -> None:
    """A random-weight transformer denoises to latents unlike any its autoencoder makes, on which
    no linear map predicts a random decoder; so the projection is checked on latents of the
    autoencoder's own kind that it was not fitted on (smooth images of another seed and shape,
    encoded), brought into the pipeline's layout by the pipeline's own rules and read back.

    A random decoder keeps little of an image beyond its colours and broad structure, and the
    preview is held to that: each preview correlates with its decoded image (0.45-1.0 on the tiny
    autoencoders, 0.4 asked), and is closer to it than the same preview with its pixels shuffled
    (by about 1% on SD, 6-58% on the others)."""
    pipe = loaded(layout, request)
    projection = projection_for(pipe)
    assert projection is not None
    factor = pipe.vae_scale_factor
    grid = torch.rand(3, 3, 3, 5, generator=torch.Generator().manual_seed(7))
    sources = F.interpolate(grid, size=(8 * factor, 12 * factor), mode="bilinear")
    with torch.inference_mode():
        latents = encoded(pipe.vae, sources * 2 - 1)
        assert latents is not None
        made = decoded(pipe.vae, latents)
        assert made is not None
        read = decoder_input(pipe, DENOISED[layout](pipe, latents), 12 * factor, 8 * factor)
    assert read is not None
    torch.testing.assert_close(read, latents, rtol=1e-4, atol=1e-4)
    previews = torch.cat([projection.rgb(image) for image in read])
    targets = F.adaptive_avg_pool2d(to_pixels(made), (8, 12))
    for preview, target in zip(previews, targets, strict=True):
        assert correlation(preview, target) > 0.4
    pixels_at = torch.randperm(12 * 8, generator=torch.Generator().manual_seed(0))
    shuffled = previews.flatten(2)[:, :, pixels_at].view_as(previews)
    assert (previews - targets).abs().mean() < (shuffled - targets).abs().mean()


def test_latents_that_do_not_tile_the_size_give_no_preview() -> None:
    # An image-to-image pipeline denoising at another size than the batch's: no preview, no error.
    pipe = flux1_pipeline()
    assert decoder_input(pipe, torch.zeros(1, 7, 16), WIDTH, HEIGHT) is None
    assert decoder_input(pipe, torch.zeros(1, 384, 15), WIDTH, HEIGHT) is None
    assert decoder_input(pipe, torch.zeros(1, 384, 16), WIDTH, HEIGHT) is not None


def test_previews_leave_the_pipeline_at_the_latents_resolution(
    tiny_sd: Path, tmp_path: Path
) -> None:
    # The receiver enlarges them, off the pipeline's thread (and after the trip from a replica).
    config = tmp_path / "models.yaml"
    config.write_text(
        f"models:\n  sd:\n    source: {tiny_sd}\n    sizes: [512x256]\n"
        "    default_size: 512x256\n    qualities: {standard: {steps: 3, guidance_scale: 0}}\n"
    )
    catalog = Catalog.build(config)
    plan = catalog.get("sd").plan(prompt="a cat", n=1, size="512x256", quality=None, style=None)
    delivered: list[tuple[int, tuple[int, ...]]] = []

    def deliver(index: int, pixels: np.ndarray) -> None:
        delivered.append((index, pixels.shape))

    async def generate() -> None:
        engine = Engine(catalog, config=Settings().scheduler_config())
        try:
            await engine.generate(plan, seed=1, previews=PreviewRequest(2, deliver))
        finally:
            await engine.shutdown()

    asyncio.run(generate())
    # Latent pixels of the size the pipeline generates (the tiny model's own, near the requested
    # aspect), which the autoencoder shrinks 8 times a side.
    assert [index for index, _ in delivered] == [0, 1]
    shape, again = (shape for _, shape in delivered)
    assert shape == again and shape[2] == 3
    assert shape[0] <= 256 // 8 and abs(shape[1] / shape[0] - 2) < 0.2


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


@pytest.fixture(scope="module")
async def packed_app(
    anyio_backend: str,
    tmp_path_factory: pytest.TempPathFactory,
    tiny_flux2_klein: Path,
    tiny_qwen_image: Path,
) -> AsyncIterator[InProcessApp]:
    config = tmp_path_factory.mktemp("packed-previews") / "models.yaml"
    config.write_text(
        "models:\n"
        f"  gpt-klein: {{family: gpt-image, source: {tiny_flux2_klein}, qualities: {QUALITIES}}}\n"
        f"  gpt-qwen: {{family: gpt-image, source: {tiny_qwen_image}, qualities: {QUALITIES}}}\n"
    )
    settings = Settings(data_dir=tmp_path_factory.mktemp("packed-previews-data"))
    async with running_app(settings, Catalog.build(config_file=config)) as app:
        yield app


@pytest.mark.anyio
@pytest.mark.parametrize("model", ["gpt-klein", "gpt-qwen"])
async def test_packed_families_stream_partial_images(packed_app: InProcessApp, model: str) -> None:
    stream = await packed_app.sdk().images.generate(
        model=model,
        prompt="a lighthouse on a cliff at dusk",
        stream=True,
        partial_images=2,
        quality="high",
        size="1024x1536",
    )
    events: list[ImageGenStreamEvent] = [event async for event in stream]
    assert [event.type for event in events] == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    *partials, completed = events
    indexes = [e.partial_image_index for e in partials if isinstance(e, ImageGenPartialImageEvent)]
    assert indexes == [0, 1]
    assert isinstance(completed, ImageGenCompletedEvent)
    first, second, image = (pixels(event.b64_json) for event in events)
    assert first.shape == second.shape == image.shape == (1536, 1024, 3)
    # Previews of the latents on their way: each differs from the next and from the image.
    assert np.abs(first - second).mean() > 1 and np.abs(second - image).mean() > 1
