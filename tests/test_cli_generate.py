"""`easel generate`: images without a server, through the same catalog, checks and engine."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import openai
import pytest
from PIL import Image

from easel.catalog.defaults import DEFAULT_MODELS
from tests.cli import run_easel
from tests.images import decode_b64, images_of, open_png


def written(stdout: str) -> list[Path]:
    return [Path(line) for line in stdout.splitlines() if line.strip()]


@pytest.mark.slow
def test_generate_writes_pngs_that_explain_themselves(tiny_sd: Path, tmp_path: Path) -> None:
    source = ("--model-source", f"dall-e-2={tiny_sd}", "--size", "256x256", "--out", str(tmp_path))
    result = run_easel("generate", "a red fox in the snow", "-n", "2", "--seed", "99", *source)
    assert result.returncode == 0, result.stderr
    paths = written(result.stdout)
    assert paths == [tmp_path / "dall-e-2-99.png", tmp_path / "dall-e-2-100.png"]
    # The progress bar counted the pipeline's denoising steps (dall-e-2's built-in preset's).
    steps = DEFAULT_MODELS["dall-e-2"]["qualities"]["standard"]["steps"]
    assert f"{steps}/{steps} steps" in result.stderr
    for path, seed in zip(paths, (99, 100), strict=True):
        with open_png(path) as image:
            assert image.format == "PNG" and image.size == (256, 256)
            text = image.text
        assert text["prompt"] == "a red fox in the snow"
        assert text["revised_prompt"] == "a red fox in the snow"
        assert text["seed"] == str(seed)
        assert text["model"] == "dall-e-2"
        assert text["quality"] == "standard" and text["steps"] == str(steps)

    # The same seed again writes the same picture, beside the first one rather than over it.
    again = run_easel("generate", "a red fox in the snow", "-n", "2", "--seed", "99", *source)
    repeats = written(again.stdout)
    assert repeats == [tmp_path / "dall-e-2-99-1.png", tmp_path / "dall-e-2-100-1.png"]
    for path, repeat in zip(paths, repeats, strict=True):
        with Image.open(path) as first, Image.open(repeat) as second:
            assert first.tobytes() == second.tobytes()


@pytest.mark.slow
def test_generate_matches_the_server_pixel_for_pixel(
    client: openai.OpenAI, tiny_sd: Path, tmp_path: Path
) -> None:
    # The session server serves dall-e-2 from the same tiny pipeline directory.
    result = run_easel(
        "generate",
        "a quiet harbour",
        "--model-source",
        f"dall-e-2={tiny_sd}",
        "--size",
        "256x256",
        "--seed",
        "31337",
        "--out",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    served = client.images.generate(
        model="dall-e-2",
        prompt="a quiet harbour",
        size="256x256",
        response_format="b64_json",
        extra_body={"seed": 31337},
    )
    with Image.open(written(result.stdout)[0]) as local:
        assert local.tobytes() == decode_b64(images_of(served)[0].b64_json or "").tobytes()


@pytest.mark.slow
def test_generate_dall_e_3_style_quality_and_config(tiny_sdxl: Path, tmp_path: Path) -> None:
    # A config file changes dall-e-3's step counts only, so the test stays fast on a CPU.
    config = tmp_path / "models.yaml"
    config.write_text(
        "models:\n  dall-e-3:\n    qualities:\n"
        "      standard: {steps: 2, guidance_scale: 7}\n      hd: {steps: 3, guidance_scale: 7}\n"
    )
    result = run_easel(
        "generate",
        "a city at night",
        "--model",
        "dall-e-3",
        "--config",
        str(config),
        "--model-source",
        f"dall-e-3={tiny_sdxl}",
        "--size",
        "1792x1024",
        "--style",
        "natural",
        "--quality",
        "hd",
        "--seed",
        "5",
        "--out",
        str(tmp_path / "out"),
    )
    assert result.returncode == 0, result.stderr
    with open_png(written(result.stdout)[0]) as image:
        assert image.size == (1792, 1024)
        text = image.text
    assert text["style"] == "natural" and text["quality"] == "hd" and text["steps"] == "3"
    assert text["revised_prompt"].startswith("a city at night, natural lighting")
    assert "3/3 steps" in result.stderr


@pytest.mark.slow
def test_generate_refuses_bad_options_with_the_servers_messages(
    tiny_sd: Path, tmp_path: Path
) -> None:
    source = ("--model-source", f"dall-e-2={tiny_sd}", "--out", str(tmp_path))
    cases = [
        (
            ("--size", "999x999"),
            "--size: Invalid value: '999x999'. Supported values are: "
            "'256x256', '512x512', and '1024x1024'.",
        ),
        (("--seed", "-3"), "--seed: -3 is less than the minimum of 0 - 'seed'"),
    ]
    for options, message in cases:
        result = run_easel("generate", "a cat", *options, *source)
        assert result.returncode == 2, (options, result.stderr)
        assert message in " ".join(result.stderr.split()), (options, result.stderr)
        assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_generate_says_when_the_pipeline_cannot_load(tmp_path: Path) -> None:
    result = run_easel(
        "generate",
        "a cat",
        "--model-source",
        "dall-e-2=/nonexistent/easel/pipeline",
        "--out",
        str(tmp_path),
    )
    assert result.returncode == 1
    assert "not a diffusers pipeline directory" in " ".join(result.stderr.split())


def test_generate_reports_a_pipeline_that_fails_while_running(
    tiny_sd: Path, tmp_path: Path
) -> None:
    # A scheduler with fewer training timesteps than the steps asked for: diffusers refuses at call
    # time, the only way to make a real pipeline fail mid-run.
    broken = tmp_path / "broken"
    shutil.copytree(tiny_sd, broken)
    config_path = broken / "scheduler" / "scheduler_config.json"
    config_path.write_text(
        json.dumps({**json.loads(config_path.read_text()), "num_train_timesteps": 1})
    )
    result = run_easel(
        "generate",
        "a cat",
        "--model-source",
        f"gpt-image-1={broken}",
        "--model",
        "gpt-image-1",
        # More than the scheduler's one timestep.
        "--quality",
        "high",
        "--out",
        str(tmp_path / "out"),
    )
    assert result.returncode == 1
    assert "the gpt-image-1 pipeline failed" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_generate_writes_the_output_format_and_background_asked_for(
    tiny_sd: Path, tiny_matting: Path, tmp_path: Path
) -> None:
    source = ("--model-source", f"gpt-image-1-mini={tiny_sd}", "--model", "gpt-image-1-mini")
    matting = {"EASEL_MATTING_MODEL": str(tiny_matting)}
    transparent = run_easel(
        "generate", "a fox", "--seed", "7", "--output-format", "webp", "--background",
        "transparent", "--out", str(tmp_path), *source, env=matting,
    )  # fmt: skip
    assert transparent.returncode == 0, transparent.stderr
    assert written(transparent.stdout) == [tmp_path / "gpt-image-1-mini-7.webp"]
    with Image.open(tmp_path / "gpt-image-1-mini-7.webp") as image:
        assert (image.format, image.mode) == ("WEBP", "RGBA")
        assert np.asarray(image)[:, :, 3].min() < 255

    jpeg = run_easel(
        "generate", "a fox", "--seed", "7", "--output-format", "jpeg", "--output-compression",
        "60", "--out", str(tmp_path), *source,
    )  # fmt: skip
    assert jpeg.returncode == 0, jpeg.stderr
    assert written(jpeg.stdout) == [tmp_path / "gpt-image-1-mini-7.jpeg"]
    with Image.open(tmp_path / "gpt-image-1-mini-7.jpeg") as image:
        assert (image.format, image.mode) == ("JPEG", "RGB")


@pytest.mark.slow
def test_generate_refuses_output_options_with_the_servers_messages(
    tiny_sd: Path, tmp_path: Path
) -> None:
    source = ("--model-source", f"gpt-image-1-mini={tiny_sd}", "--model", "gpt-image-1-mini")
    cases = [
        (
            ("--output-format", "jpeg", "--background", "transparent"),
            "--background: Transparent background is not supported with the 'jpeg' output "
            "format. Use 'png' or 'webp'.",
        ),
        (
            ("--output-compression", "101"),
            "--output-compression: 101 is greater than the maximum of 100 - 'output_compression'",
        ),
    ]
    for options, message in cases:
        result = run_easel("generate", "a cat", *options, *source, "--out", str(tmp_path))
        assert result.returncode == 2, (options, result.stderr)
        assert message in " ".join(result.stderr.split()), (options, result.stderr)
    assert list(tmp_path.iterdir()) == []
