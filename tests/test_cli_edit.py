"""`easel generate --image FILE [--mask FILE]`: edits from the command line, through the API's
checks (a hostile file is refused in one line, before any model loads)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tests.cli import run_easel
from tests.edit_images import declared_png, mask_png, png


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("image", "mask", "said"),
    [
        (declared_png(50_000, 50_000), None, "--image: Invalid file 'image'"),
        (png(64, 64), png(64, 64), "--mask: Invalid mask image format"),
    ],
)
def test_bad_inputs_are_refused_in_one_line(
    tiny_sd: Path, tmp_path: Path, image: bytes, mask: bytes | None, said: str
) -> None:
    args = ["generate", "a hat", "--model-source", f"dall-e-2={tiny_sd}", "--out", str(tmp_path)]
    args += ["--image", str(write(tmp_path / "in.png", image))]
    if mask is not None:
        args += ["--mask", str(write(tmp_path / "mask.png", mask))]
    result = run_easel(*args)
    assert result.returncode == 2, result.stderr
    assert said in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr and "Loading" not in result.stderr


def test_a_mask_needs_an_image(tmp_path: Path) -> None:
    result = run_easel("generate", "a hat", "--mask", str(write(tmp_path / "m.png", png(8, 8))))
    assert result.returncode == 2 and "--mask needs an --image" in result.stderr


def test_an_unreadable_image_is_named(tmp_path: Path) -> None:
    result = run_easel("generate", "a hat", "--image", str(tmp_path / "missing.png"))
    assert result.returncode == 2, result.stderr


@pytest.mark.slow
def test_generate_edits_an_image_with_a_mask(tiny_sd: Path, tmp_path: Path) -> None:
    image = write(tmp_path / "in.png", png(64, 64))
    mask = write(tmp_path / "mask.png", mask_png(64, 64, (0, 0, 32, 64)))
    out = tmp_path / "out"
    result = run_easel(
        "generate",
        "a red hat",
        "--model-source",
        f"dall-e-2={tiny_sd}",
        "--size",
        "256x256",
        "--seed",
        "5",
        "--image",
        str(image),
        "--mask",
        str(mask),
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    [path] = [Path(line) for line in result.stdout.splitlines() if line.strip()]
    with Image.open(path) as edited:
        assert edited.size == (256, 256)
