"""The built-in catalog chosen per machine, and the tiny decoder (TAESD) a catalog entry names."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, AutoencoderTiny

from easel.catalog import Catalog
from easel.catalog.catalog import CatalogConfigError
from easel.catalog.defaults import FLUX2_KLEIN_4B, SD_TURBO, TAESD, Z_IMAGE_TURBO
from easel.catalog.machine import GIB, Machine
from easel.cli.serve import log_choices
from easel.engine.loader import ModelLoadError, load_pipeline
from easel.settings import Settings
from tests.cli import run_easel
from tests.hub_cache import add_to_hub_cache
from tests.images import decode_b64, images_of, open_png
from tests.inprocess import running_app
from tests.server import start_server

BUILTIN_NAMES = (
    "dall-e-2",
    "dall-e-3",
    "gpt-image-1",
    "gpt-image-1.5",
    "gpt-image-1-mini",
    "gpt-image-2",
    "gpt-image-2-2026-04-21",
)
GPT_NAMES = [name for name in BUILTIN_NAMES if name.startswith("gpt-")]

LARGE_CUDA = Machine("cuda", 80 * GIB)
# What an RTX 4090's driver reports: 24 GB cards hold Z-Image-Turbo.
CARD_24GB = Machine("cuda", 25_386_352_640)
SMALL_CUDA = Machine("cuda", 16 * GIB)
APPLE = Machine("mps")
CPU = Machine("cpu")


@pytest.mark.parametrize("machine", [LARGE_CUDA, CARD_24GB])
def test_a_large_gpu_runs_z_image_turbo_behind_every_name(machine: Machine) -> None:
    catalog = Catalog.build(machine=machine)
    assert catalog.names() == list(BUILTIN_NAMES)
    for spec in catalog:
        assert (spec.source, spec.decoder) == (Z_IMAGE_TURBO, None)
        assert spec.licence.startswith("Apache-2.0") and spec.commercial_use == "allowed"
        assert catalog.origin(spec.name).startswith(f"built-in: {machine}: Z-Image-Turbo fits")
    for name in GPT_NAMES:
        assert catalog.get(name).edits_source == FLUX2_KLEIN_4B
    assert catalog.get("dall-e-2").edits_source is None
    assert catalog.get("dall-e-3").qualities["standard"].steps == 8


@pytest.mark.parametrize("machine", [SMALL_CUDA, APPLE, CPU])
def test_small_machines_run_sd_turbo_with_the_tiny_decoder(machine: Machine) -> None:
    catalog = Catalog.build(machine=machine)
    assert catalog.names() == list(BUILTIN_NAMES)
    for spec in catalog:
        assert (spec.source, spec.decoder, spec.edits_source) == (SD_TURBO, TAESD, None)
        assert "TAESD: MIT" in spec.licence and spec.commercial_use == "limited"
        assert "SD-Turbo with the TAESD decoder at 512 px" in catalog.origin(spec.name)
    assert catalog.get("dall-e-2").qualities["standard"].steps == 1


@pytest.mark.parametrize("machine", [LARGE_CUDA, CPU])
def test_presets_suit_a_guidance_distilled_model(machine: Machine) -> None:
    catalog = Catalog.build(machine=machine)
    for spec in catalog:
        assert all(preset.guidance_scale == 0 for preset in spec.qualities.values())
        assert spec.negative_prompt is None
        assert all(
            style.negative_prompt is None and style.guidance_scale is None
            for style in spec.styles.values()
        )
    dall_e_3 = catalog.get("dall-e-3").qualities
    assert dall_e_3["hd"].steps > dall_e_3["standard"].steps
    gpt, mini = catalog.get("gpt-image-1").qualities, catalog.get("gpt-image-1-mini").qualities
    assert gpt["low"].steps <= gpt["medium"].steps < gpt["high"].steps
    assert all(mini[quality].steps <= gpt[quality].steps for quality in gpt)


def test_another_source_drops_the_builtin_weights_facts(tmp_path: Path) -> None:
    config = tmp_path / "easel.yaml"
    config.write_text(
        "models:\n"
        "  gpt-image-2.5-flare: {family: gpt-image-2}\n"
        "  mine: {family: gpt-image, source: org/mine}\n"
    )
    catalog = Catalog.build(config, ["dall-e-3=org/other"], machine=CPU)
    for name in ("dall-e-3", "mine"):
        spec = catalog.get(name)
        assert (spec.decoder, spec.licence, spec.commercial_use) == (
            None,
            "see the model card",
            "unknown",
        )
        assert catalog.origin(name) == "configured"
    # A new name of a family runs the family's built-in model, decoder and all.
    flare = catalog.get("gpt-image-2.5-flare")
    assert (flare.source, flare.decoder) == (SD_TURBO, TAESD)
    assert Catalog.build(config, machine=LARGE_CUDA).get("mine").edits_source == FLUX2_KLEIN_4B


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ("dall-e-2: {edits_source: org/editor}", "edits_source is for GPT image families"),
        ("gpt-image-1: {edits_source: ''}", "edits_source"),
        ("dall-e-2: {decoder: ''}", "decoder"),
        ("dall-e-2: {commercial_use: perhaps}", "commercial_use"),
    ],
)
def test_bad_weights_fields_are_refused(tmp_path: Path, entry: str, fragment: str) -> None:
    config = tmp_path / "easel.yaml"
    config.write_text(f"models:\n  {entry}\n")
    with pytest.raises(CatalogConfigError, match=fragment):
        Catalog.build(config)


def test_start_log_says_what_each_name_runs_and_why(caplog: pytest.LogCaptureFixture) -> None:
    catalog = Catalog.build(overrides=["dall-e-2=/models/mine"], machine=LARGE_CUDA)
    with caplog.at_level(logging.INFO, logger="easel.cli.serve"):
        log_choices(catalog)
    lines = {record.getMessage().split(":")[0]: record.getMessage() for record in caplog.records}
    assert list(lines) == [f"model {name}" for name in BUILTIN_NAMES]
    assert lines["model dall-e-2"] == "model dall-e-2: /models/mine; configured"
    assert lines["model dall-e-3"] == (
        f"model dall-e-3: {Z_IMAGE_TURBO}; built-in: CUDA GPU with 80.0 GiB: Z-Image-Turbo fits "
        "(needs 22.0 GiB)"
    )


def test_a_fresh_server_on_this_cpu_logs_sd_turbo_with_taesd(tmp_path: Path) -> None:
    # Offline, with an empty hub cache: the server starts, logs its choice, and its loads fail.
    server = start_server(
        tmp_path / "data", env={"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    )
    try:
        log = server.log()
    finally:
        server.stop()
    assert (
        f"model gpt-image-2: {SD_TURBO} (decoder {TAESD}); built-in: CPU only: Z-Image-Turbo "
        "needs a CUDA GPU with 22.0 GiB, so SD-Turbo with the TAESD decoder at 512 px" in log
    )


def test_models_list_shows_the_choice_decoder_and_edits_source(
    tmp_path: Path, tiny_sd: Path
) -> None:
    config = tmp_path / "easel.yaml"
    config.write_text("models:\n  gpt-image-1: {edits_source: org/editor}\n")
    result = run_easel(
        "models",
        "list",
        "--config",
        str(config),
        "--model-source",
        f"dall-e-3={tiny_sd}",
        env={"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if "│" in line}
    assert "│ limited" in rows["dall-e-2"] and f"│ {TAESD}" in rows["dall-e-2"]
    assert "│ built-in" in rows["dall-e-2"] and "│ configured" in rows["dall-e-3"]
    assert "│ org/editor" in rows["gpt-image-1"]
    assert "Built-in models: CPU only: Z-Image-Turbo needs a CUDA GPU" in result.stdout


@pytest.fixture
def decoder_catalog(tmp_path: Path, tiny_sd: Path, tiny_taesd: Path) -> Catalog:
    """The tiny SD pipeline twice: `tiny` with its own VAE, `tiny-taesd` with the tiny decoder."""
    config = tmp_path / "easel.yaml"
    rules = (
        "sizes: [256x256], default_size: 256x256, "
        "qualities: {standard: {steps: 2, guidance_scale: 0}}"
    )
    config.write_text(
        "models:\n"
        f"  tiny: {{source: {tiny_sd}, {rules}}}\n"
        f"  tiny-taesd: {{source: {tiny_sd}, decoder: {tiny_taesd}, {rules}}}\n"
    )
    return Catalog.build(config)


@pytest.mark.anyio
async def test_a_model_with_a_decoder_serves_images_decoded_by_it(
    decoder_catalog: Catalog,
) -> None:
    async with running_app(Settings(), decoder_catalog) as app:
        engine = app.app.state.services.engine
        sdk = app.sdk()
        pixels = {}
        for model in ("tiny", "tiny-taesd"):
            result = await sdk.images.generate(
                model=model,
                prompt="a lighthouse",
                response_format="b64_json",
                extra_body={"seed": 7},
            )
            image = decode_b64(images_of(result)[0].b64_json or "")
            assert image.size == (256, 256)
            pixels[model] = np.asarray(image.convert("RGB"), dtype=np.int16)
        assert type(engine.pipeline("tiny-taesd").vae) is AutoencoderTiny
        assert type(engine.pipeline("tiny").vae) is AutoencoderKL
    # Same weights, prompt and seed: only the decoder differs, and so do the pixels.
    assert np.abs(pixels["tiny"] - pixels["tiny-taesd"]).mean() > 1


def test_a_decoder_that_cannot_read_the_latents_is_refused(
    tiny_zimage: Path, tiny_taesd: Path
) -> None:
    with pytest.raises(ModelLoadError, match="reads 4-channel latents"):
        load_pipeline(str(tiny_zimage), torch.device("cpu"), torch.float32, str(tiny_taesd))


def test_a_decoder_directory_without_a_model_is_refused(tiny_sd: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        load_pipeline(str(tiny_sd), torch.device("cpu"), torch.float32, str(tmp_path))


def test_a_hub_decoder_is_pulled_with_its_pipeline_and_used_offline(
    tmp_path: Path, tiny_sd: Path, tiny_taesd: Path
) -> None:
    hf_home = tmp_path / "hf"
    add_to_hub_cache(hf_home / "hub", "easel-test/tiny-sd", tiny_sd)
    add_to_hub_cache(hf_home / "hub", "easel-test/tiny-taesd", tiny_taesd)
    config = tmp_path / "easel.yaml"
    rules = "sizes: [256x256], default_size: 256x256"
    config.write_text(
        "models:\n"
        f"  cached: {{source: easel-test/tiny-sd, decoder: easel-test/tiny-taesd, {rules}}}\n"
        f"  uncached: {{source: easel-test/tiny-sd, decoder: easel-test/absent, {rules}}}\n"
    )
    env = {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    pulled = run_easel("models", "pull", "cached", "--config", str(config), env=env)
    assert pulled.returncode == 0, pulled.stderr
    pipeline, decoder = (Path(line) for line in pulled.stdout.split())
    assert (pipeline / "model_index.json").is_file() and (decoder / "config.json").is_file()
    assert "models--easel-test--tiny-taesd" in str(decoder)
    missing = run_easel("models", "pull", "uncached", "--config", str(config), env=env)
    assert missing.returncode == 1
    assert "could not fetch 'easel-test/absent'" in " ".join(missing.stderr.split())
    generated = run_easel(
        "generate",
        "a fox",
        "--model",
        "cached",
        "--config",
        str(config),
        "--out",
        str(tmp_path / "out"),
        env=env,
    )
    assert generated.returncode == 0, generated.stderr
    with open_png(generated.stdout.strip()) as image:
        assert image.size == (256, 256)


def test_a_gpt_names_edits_source_is_pulled_with_its_pipeline(
    tmp_path: Path, tiny_sd: Path, tiny_flux2_klein: Path
) -> None:
    hf_home = tmp_path / "hf"
    add_to_hub_cache(hf_home / "hub", "easel-test/tiny-sd", tiny_sd)
    add_to_hub_cache(hf_home / "hub", "easel-test/tiny-klein", tiny_flux2_klein)
    config = tmp_path / "easel.yaml"
    config.write_text(
        "models:\n"
        "  gpt-image-1: {source: easel-test/tiny-sd, edits_source: easel-test/tiny-klein}\n"
    )
    env = {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    pulled = run_easel("models", "pull", "gpt-image-1", "--config", str(config), env=env)
    assert pulled.returncode == 0, pulled.stderr
    pipeline, edits = (Path(line) for line in pulled.stdout.split())
    assert "models--easel-test--tiny-sd" in str(pipeline)
    assert "models--easel-test--tiny-klein" in str(edits)
    assert (edits / "model_index.json").is_file()
