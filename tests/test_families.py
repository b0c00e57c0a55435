"""Model families first-class: each tiny pipeline is recognised as its family, the family table
agrees with diffusers' own pipelines, presets that would spoil a guidance-distilled checkpoint are
corrected when the engine starts, and Qwen-Image's pipeline runs true CFG."""

from __future__ import annotations

import asyncio
import inspect
import logging
import shutil
from pathlib import Path

import diffusers
import pytest
import torch

from easel.catalog import Catalog, ModelSpec
from easel.devtools.tiny_pipelines import build_tiny_zimage
from easel.engine.engine import Engine
from easel.engine.families import (
    FAMILIES,
    ModelFamily,
    family_for_source,
    family_of,
    guidance_distilled,
)
from easel.engine.family_presets import fitted_spec
from easel.engine.jobs import BatchKey
from easel.engine.loader import load_pipeline
from easel.engine.pipeline_args import guidance_arguments
from easel.engine.resolution import generation_size, native_side
from easel.settings import Settings
from tests.cli import run_easel
from tests.guided_presets import guided_dall_e_3

FIXTURE_FAMILIES = {
    "tiny_sd": "stable-diffusion",
    "tiny_sdxl": "stable-diffusion-xl",
    "tiny_zimage": "z-image",
    "tiny_flux2_klein": "flux.2-klein",
    "tiny_qwen_image": "qwen-image",
}
# FLUX.2 klein's distilled checkpoints say so in model_index.json (`is_distilled`), as the tiny one.
DISTILLED_FIXTURES = {"tiny_flux2_klein"}


@pytest.fixture(scope="module")
def tiny_zimage_turbo(tiny_zimage: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Z-Image under a Z-Image-Turbo name: what tells a turbo checkpoint apart."""
    copy = tmp_path_factory.mktemp("turbo") / "Z-Image-Turbo"
    shutil.copytree(tiny_zimage, copy)
    return copy


@pytest.mark.parametrize("fixture", sorted(FIXTURE_FAMILIES))
def test_each_tiny_pipeline_is_detected_as_its_family(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    source = str(request.getfixturevalue(fixture))
    family = family_for_source(source)
    assert family is not None and family.name == FIXTURE_FAMILIES[fixture]
    assert guidance_distilled(family, source) == (fixture in DISTILLED_FIXTURES)


@pytest.mark.parametrize(
    ("source", "distilled"),
    [
        ("stabilityai/sd-turbo", True),
        ("Tongyi-MAI/Z-Image-Turbo", True),
        ("Tongyi-MAI/Z-Image", False),
        ("black-forest-labs/FLUX.1-schnell", True),
        ("black-forest-labs/FLUX.1-dev", False),
        ("black-forest-labs/FLUX.2-klein-base-4B", False),
    ],
)
def test_hub_checkpoints_not_downloaded_are_told_apart_by_name(
    source: str, distilled: bool
) -> None:
    # Nothing is fetched: a hub id is read from the local cache only, here empty.
    family = FAMILIES[0]
    assert guidance_distilled(family, source) == distilled


@pytest.mark.parametrize("family", FAMILIES, ids=lambda family: family.name)
def test_family_table_agrees_with_diffusers(family: ModelFamily) -> None:
    derived = [name for name in (family.img2img, family.inpaint) if name is not None]
    for name in (*family.pipelines, *derived):
        assert hasattr(diffusers, name), name
        assert family_of(name) is family
    for name in family.pipelines:
        parameters = inspect.signature(getattr(diffusers, name).__call__).parameters
        if family.negative_prompt:
            assert "negative_prompt" in parameters
        assert ("true_cfg_scale" in parameters) >= (family.guidance == "true_cfg")
        if "max_sequence_length" in parameters:
            assert parameters["max_sequence_length"].default == family.max_prompt_tokens
        else:
            assert family.encoder == "clip" and family.max_prompt_tokens == 77
        assert family.multi_reference == ("image" in parameters)


def dall_e_3_on(source: Path) -> ModelSpec:
    """dall-e-3's rules with guided presets (25/40 steps, guidance 5-8, negative prompts) on
    `source`."""
    return ModelSpec(name="dall-e-3", **guided_dall_e_3(str(source)))


def test_engine_start_corrects_presets_that_would_burn_a_turbo_checkpoint(
    tiny_zimage_turbo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    catalog = Catalog([dall_e_3_on(tiny_zimage_turbo)])
    with caplog.at_level(logging.WARNING, logger="easel.engine.family_presets"):
        engine = Engine(catalog, config=Settings().scheduler_config())
    asyncio.run(engine.shutdown())
    spec = catalog.get("dall-e-3")
    assert {name: (q.steps, q.guidance_scale) for name, q in spec.qualities.items()} == {
        "standard": (8, 0.0),
        "hd": (8, 0.0),
    }
    assert {(s.negative_prompt, s.guidance_scale) for s in spec.styles.values()} == {(None, 0.0)}
    plan = spec.plan(prompt="a cat", n=1, size=None, quality="hd", style="vivid")
    assert (plan.steps, plan.guidance_scale, plan.negative_prompt) == (8, 0.0, None)
    warnings = [record.getMessage() for record in caplog.records]
    assert (
        "model dall-e-3: qualities.hd.steps corrected from 40 to 8 (z-image, distilled guidance)"
        in warnings
    )
    assert any("styles.vivid.negative_prompt corrected from 'dull" in line for line in warnings)
    assert all(record.levelno == logging.WARNING for record in caplog.records)


def test_presets_of_a_model_that_takes_guidance_are_left_alone(
    tiny_zimage: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spec = dall_e_3_on(tiny_zimage)
    family = family_for_source(spec.source)
    assert family is not None
    with caplog.at_level(logging.WARNING):
        assert fitted_spec(spec, family) is spec
    assert not caplog.records


def test_a_family_without_negative_prompts_gets_none() -> None:
    family = family_of("FluxPipeline")
    assert family is not None
    spec = dall_e_3_on(Path("black-forest-labs/FLUX.1-dev"))
    fitted = fitted_spec(spec, family)
    assert {style.negative_prompt for style in fitted.styles.values()} == {None}
    # FLUX.1 dev reads its guidance as an embedded value: kept.
    assert fitted.qualities == spec.qualities
    assert {s.guidance_scale for s in fitted.styles.values()} == {8.0, 5.0}


@pytest.mark.parametrize(("negative", "given"), [(None, " "), ("blurry", "blurry")])
def test_qwen_image_runs_true_cfg(tiny_qwen_image: Path, negative: str | None, given: str) -> None:
    """Qwen-Image guides only through `true_cfg_scale`, with a second transformer pass on a
    negative prompt (" " when the request has none); its `guidance_scale` is an embedded value the
    base model ignores. The real pipeline runs on the arguments Easel gives it, at a small size;
    its passes are counted with a forward hook on its transformer."""
    pipe = load_pipeline(str(tiny_qwen_image), torch.device("cpu"), torch.float32)
    key = BatchKey(64, 64, steps=1, guidance_scale=4.0, has_negative_prompt=negative is not None)
    arguments = guidance_arguments(pipe, key, [negative or ""])
    assert arguments == {"true_cfg_scale": 4.0, "negative_prompt": [given]}
    passes: list[int] = []
    pipe.transformer.register_forward_hook(lambda *_: passes.append(1))
    pipe(
        prompt=["一只猫"],
        width=64,
        height=64,
        num_inference_steps=1,
        output_type="latent",
        generator=torch.Generator().manual_seed(0),
        **arguments,
    )
    # The one step is a conditional and a negative pass.
    assert len(passes) == 2


def test_models_list_shows_family_languages_and_prompt_tokens(
    tiny_sd: Path, tiny_qwen_image: Path
) -> None:
    result = run_easel(
        "models",
        "list",
        "--model-source",
        f"dall-e-2={tiny_sd}",
        "--model-source",
        f"dall-e-3={tiny_qwen_image}",
        env={"HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr
    cells = {
        row[0]: row
        for line in result.stdout.splitlines()
        if line.count("│") > 3
        for row in [[cell.strip() for cell in line.split("│")[1:-1]]]
    }
    assert cells["dall-e-2"][4:7] == ["stable-diffusion", "en", "77"]
    assert cells["dall-e-3"][4:7] == ["qwen-image", "en, zh", "512"]
    # A hub model not downloaded: its family is known once its model_index.json is here.
    assert cells["gpt-image-1"][4:7] == ["-", "-", "-"]


@pytest.mark.parametrize(
    ("source", "distilled"),
    [
        ("/srv/turbo-experiments/sdxl", False),
        ("/hub/models--Tongyi-MAI--Z-Image-Turbo/snapshots/0123abc", True),
        ("/hub/models--Tongyi-MAI--Z-Image/snapshots/0123abc", False),
        ("~/models/sd-turbo/.", True),
    ],
)
def test_only_the_checkpoints_own_name_counts(source: str, distilled: bool) -> None:
    # A folder above the checkpoint (a test's temporary directory, a project's) says nothing.
    assert guidance_distilled(FAMILIES[0], source) == distilled


def test_a_zimage_trained_at_1024_generates_at_1024(tmp_path: Path) -> None:
    # Its native size is read from its autoencoder's config, as the real model's (FLUX.1's VAE).
    source = build_tiny_zimage(tmp_path / "z-image-1024", native_side=1024)
    pipe = load_pipeline(str(source), torch.device("cpu"), torch.float32)
    assert native_side(pipe) == 1024
    assert generation_size(pipe, 1024, 1024) == (1024, 1024)
    width, height = generation_size(pipe, 1792, 1024)
    assert width % 16 == 0 and height % 16 == 0
    assert abs(width * height / 1024**2 - 1) < 0.05 and width > height
