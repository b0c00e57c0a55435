"""The catalog: built-in rules, YAML entries and `--model` overrides merged in one place."""

from __future__ import annotations

from pathlib import Path

import pytest

from easel.catalog import Catalog
from easel.catalog.catalog import CatalogConfigError
from easel.errors import InvalidRequestError, NotFoundError


def test_defaults_follow_openai_limits() -> None:
    catalog = Catalog.build()
    dall_e_2, dall_e_3 = catalog.get("dall-e-2"), catalog.get("dall-e-3")
    assert (dall_e_2.max_prompt_chars, dall_e_2.max_n) == (1000, 10)
    assert dall_e_2.sizes == ("256x256", "512x512", "1024x1024")
    assert list(dall_e_2.qualities) == ["standard"] and not dall_e_2.styles
    assert (dall_e_3.max_prompt_chars, dall_e_3.max_n) == (4000, 1)
    assert dall_e_3.sizes == ("1024x1024", "1792x1024", "1024x1792")
    assert set(dall_e_3.qualities) == {"standard", "hd"}
    assert set(dall_e_3.styles) == {"vivid", "natural"} and dall_e_3.default_style == "vivid"


def test_override_replaces_the_pipeline_and_keeps_the_rules(tmp_path: Path) -> None:
    catalog = Catalog.build(overrides=[f"dall-e-3={tmp_path}", "mine=org/model"])
    assert catalog.get("dall-e-3").source == str(tmp_path)
    assert catalog.get("dall-e-3").max_n == 1
    mine = catalog.get("mine")
    assert mine.source == "org/model" and mine.max_n == 10 and not mine.styles


def test_yaml_entries_merge_over_defaults(tmp_path: Path) -> None:
    config = tmp_path / "easel.yaml"
    config.write_text(
        "models:\n"
        "  dall-e-2:\n"
        "    max_n: 4\n"
        "  sdxl:\n"
        "    source: stabilityai/stable-diffusion-xl-base-1.0\n"
        "    sizes: [1024x1024, 1152x896]\n"
        "    styles:\n"
        "      anime: {prompt_template: '{prompt}, anime style', guidance_scale: 6}\n"
        "    default_style: anime\n"
        "    returns_revised_prompt: true\n"
    )
    catalog = Catalog.build(config, ["sdxl=/models/sdxl"])
    assert catalog.get("dall-e-2").max_n == 4
    assert catalog.get("dall-e-2").max_prompt_chars == 1000
    plan = catalog.get("sdxl").plan(
        prompt="a fox", n=None, size="1152x896", quality=None, style=None
    )
    assert plan.prompt == "a fox, anime style" == plan.revised_prompt
    assert (plan.width, plan.height, plan.guidance_scale) == (1152, 896, 6)
    assert catalog.get("sdxl").source == "/models/sdxl"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("models: [1, 2]", "must map"),
        ("models:\n  x:\n    source: a/b\n    sizes: [big]\n", "WIDTHxHEIGHT"),
        ("models:\n  x:\n    source: a/b\n    colour: red\n", "colour"),
        ("models:\n  x:\n    sizes: [256x256]\n    default_size: 256x256\n", "source"),
        ("models:\n  x:\n    source: a/b\n    default_size: 9x9\n", "default_size"),
        (
            "models: {x: {source: a/b, styles: {s: {prompt_template: no placeholder}}, "
            "default_style: s}}",
            "{prompt}",
        ),
        ("{{{", "YAML"),
    ],
)
def test_bad_config_is_refused_with_a_reason(tmp_path: Path, text: str, fragment: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    with pytest.raises(CatalogConfigError) as excinfo:
        Catalog.build(config)
    assert fragment in str(excinfo.value)


@pytest.mark.parametrize("override", ["dall-e-2", "=dir", "name="])
def test_bad_override_is_refused(override: str) -> None:
    with pytest.raises(CatalogConfigError):
        Catalog.build(overrides=[override])


def test_unknown_model_and_per_model_checks() -> None:
    catalog = Catalog.build()
    with pytest.raises(NotFoundError):
        catalog.get("gpt-image-0")
    with pytest.raises(InvalidRequestError) as excinfo:
        catalog.get("dall-e-3").plan(
            prompt="x", n=1, size="1024x1024", quality="hd", style="pastel"
        )
    assert excinfo.value.param == "style"


def test_a_later_gpt_name_takes_its_familys_rules_from_one_yaml_line(tmp_path: Path) -> None:
    config = tmp_path / "easel.yaml"
    config.write_text(
        "models:\n"
        "  gpt-image-2.5-flare: {family: gpt-image-2}\n"
        "  gpt-image-1.5: {source: /models/mine}\n"
    )
    catalog = Catalog.build(config)
    flare, builtin = catalog.get("gpt-image-2.5-flare"), catalog.get("gpt-image-2")
    assert flare.model_dump(exclude={"name"}) == builtin.model_dump(exclude={"name"})
    # A built-in GPT name pointed elsewhere keeps its family's rules.
    mine = catalog.get("gpt-image-1.5")
    assert (mine.source, mine.family, mine.max_prompt_chars) == ("/models/mine", "gpt-image", 32000)


def test_an_unknown_family_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "easel.yaml"
    config.write_text("models:\n  mine: {family: gpt-image-9, source: org/model}\n")
    with pytest.raises(CatalogConfigError, match="family"):
        Catalog.build(config)
