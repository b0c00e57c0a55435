"""The DiT families (Z-Image, FLUX.2 klein, Qwen-Image) as tiny random-weight pipelines in the
hub layout: Easel's loader loads them, its sizing reads their configs, and `easel serve` answers
the official SDK on them, Chinese prompts included."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import torch
import yaml
from transformers import AutoTokenizer

from easel.devtools.tiny_pipelines import build_tiny_zimage
from easel.engine.loader import load_pipeline
from easel.engine.resolution import native_side
from easel.engine.tuning import tune_for_serving
from tests.guided_presets import guided_dall_e_3
from tests.images import decode_b64, images_of, size_of
from tests.server import RunningServer, create_key, sdk_client, start_server

SEED_PROMPT = "一只在太空中行走的可爱猫咪,写实风格"
FAMILIES = {
    "tiny_zimage": "ZImagePipeline",
    "tiny_flux2_klein": "Flux2KleinPipeline",
    "tiny_qwen_image": "QwenImagePipeline",
}
# The tiny DiTs are native at 256 px: Z-Image through its autoencoder's sample size, FLUX.2 klein
# and Qwen-Image through their pipelines' fixed 128 latents and tiny x2 autoencoders.
NATIVE_SIDE = 256


@pytest.mark.parametrize("fixture", sorted(FAMILIES))
def test_loader_loads_the_family_and_it_generates(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    directory: Path = request.getfixturevalue(fixture)
    pipe = load_pipeline(str(directory), torch.device("cpu"), torch.float32)
    assert type(pipe).__name__ == FAMILIES[fixture]
    images = pipe(
        prompt=[SEED_PROMPT, "a cute cat walking in space"],
        num_inference_steps=2,
        guidance_scale=0.0,
        width=64,
        height=64,
        generator=torch.Generator().manual_seed(0),
        output_type="pt",
    ).images
    assert images.shape == (2, 3, 64, 64)
    assert torch.isfinite(images).all()


def test_qwen_tokenizer_reads_chinese_in_qwen_chat_format(tiny_zimage: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_zimage / "tokenizer")
    assert type(tokenizer).__name__ == "Qwen2Tokenizer"
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": SEED_PROMPT}], tokenize=False, add_generation_prompt=True
    )
    ids = tokenizer(text).input_ids
    assert tokenizer.decode(ids) == text
    assert ids.count(tokenizer.convert_tokens_to_ids("<|im_start|>")) == 2
    # The merges learnt from the seed prompt: fewer tokens than its UTF-8 bytes.
    assert len(tokenizer(SEED_PROMPT).input_ids) < len(SEED_PROMPT.encode()) / 2


@pytest.mark.parametrize("fixture", sorted(FAMILIES))
def test_native_side_comes_from_the_pipeline_configs(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    # Before Z-Image's autoencoder was consulted, a DiT without a sample size fell back to 512.
    directory: Path = request.getfixturevalue(fixture)
    pipe = load_pipeline(str(directory), torch.device("cpu"), torch.float32)
    assert native_side(pipe) == NATIVE_SIDE


def test_serving_layout_skips_qwen_images_3d_autoencoder(tiny_qwen_image: Path) -> None:
    # Channels-last weights are 4-D only: converting the 5-D Conv3d weights failed the load.
    pipe = load_pipeline(str(tiny_qwen_image), torch.device("cpu"), torch.float32)
    assert "vae" not in tune_for_serving(pipe)


@pytest.fixture(scope="module")
def dit_server(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_zimage: Path,
    tiny_flux2_klein: Path,
    tiny_qwen_image: Path,
) -> Iterator[RunningServer]:
    """`easel serve` with dall-e-3 on Z-Image with turbo presets (few steps, no guidance, no
    negative prompt, no style wording), dall-e-2 on FLUX.2 klein with its own rules, and a
    user's own name on Qwen-Image."""
    data_dir = tmp_path_factory.mktemp("dit-data")
    config = data_dir / "catalog.yaml"
    config.write_text(
        "models:\n"
        "  dall-e-3:\n"
        f"    source: {tiny_zimage}\n"
        "    qualities:\n"
        "      standard: {steps: 4, guidance_scale: 0}\n"
        "      hd: {steps: 8, guidance_scale: 0}\n"
        "    styles: {vivid: {}, natural: {}}\n"
        "  qwen-image:\n"
        f"    source: {tiny_qwen_image}\n"
        "    sizes: [1328x1328, 1664x928]\n"
        "    default_size: 1328x1328\n"
        "    qualities: {standard: {steps: 2, guidance_scale: 0}}\n",
        encoding="utf-8",
    )
    running = start_server(
        data_dir, "--config", str(config), "--model", f"dall-e-2={tiny_flux2_klein}"
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def dit_client(dit_server: RunningServer) -> openai.OpenAI:
    return sdk_client(dit_server)


@pytest.mark.parametrize("size", ["1024x1024", "1792x1024"])
def test_zimage_as_dall_e_3_answers_the_chinese_seed_prompt(
    dit_client: openai.OpenAI, size: str
) -> None:
    result = dit_client.images.generate(
        model="dall-e-3", prompt=SEED_PROMPT, size=size, response_format="b64_json"
    )
    item = images_of(result)[0]
    # The presets add no English wording to the Chinese prompt.
    assert item.revised_prompt == SEED_PROMPT
    image = decode_b64(item.b64_json or "")
    assert image.size == size_of(size)
    assert image.text["prompt"] == SEED_PROMPT
    gen_w, gen_h = size_of(image.text["generated_size"])
    want_w, want_h = size_of(size)
    assert gen_w % 16 == 0 and gen_h % 16 == 0
    assert abs(gen_w * gen_h / NATIVE_SIDE**2 - 1) < 0.15
    assert abs((gen_w / gen_h) / (want_w / want_h) - 1) < 0.15


def test_flux2_klein_as_dall_e_2_answers_n_images(dit_client: openai.OpenAI) -> None:
    result = dit_client.images.generate(
        model="dall-e-2", prompt=SEED_PROMPT, n=2, size="512x512", response_format="b64_json"
    )
    images = [decode_b64(item.b64_json or "") for item in images_of(result)]
    assert [image.size for image in images] == [(512, 512)] * 2
    assert [image.text["generated_size"] for image in images] == ["256x256"] * 2
    assert images[0].tobytes() != images[1].tobytes()


def test_qwen_image_under_its_own_name(dit_client: openai.OpenAI) -> None:
    result = dit_client.images.generate(
        model="qwen-image", prompt=SEED_PROMPT, size="1664x928", response_format="b64_json"
    )
    image = decode_b64(images_of(result)[0].b64_json or "")
    assert image.size == (1664, 928)
    assert image.text["model"] == "qwen-image"


@pytest.fixture(scope="module")
def zimage_turbo_1024(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Z-Image native at 1024 px, the real model's resolution, under a Z-Image-Turbo name."""
    return build_tiny_zimage(
        tmp_path_factory.mktemp("pipelines") / "Z-Image-Turbo", native_side=1024
    )


@pytest.mark.slow
def test_zimage_turbo_as_dall_e_3_generates_at_1024_with_turbo_presets(
    tmp_path: Path, zimage_turbo_1024: Path
) -> None:
    """Issue 12's done check: dall-e-3, with presets made for a model that takes guidance (25
    and 40 steps, guidance 5-8, English negative prompts), on a Z-Image-Turbo-like pipeline
    trained at 1024 px. The engine's start corrects the presets with a warning; the request
    generates at 1024x1024 without guidance, without a negative prompt, in 8 steps."""
    config = tmp_path / "models.yaml"
    entry = guided_dall_e_3(str(zimage_turbo_1024))
    config.write_text(yaml.safe_dump({"models": {"dall-e-3": entry}}), encoding="utf-8")
    running = start_server(tmp_path, "--config", str(config))
    try:
        client = openai.OpenAI(
            api_key=create_key(tmp_path),
            base_url=running.base_url + "/v1",
            max_retries=0,
            timeout=300,
        )
        result = client.images.generate(
            model="dall-e-3", prompt=SEED_PROMPT, size="1024x1024", response_format="b64_json"
        )
    finally:
        running.stop()
    image = decode_b64(images_of(result)[0].b64_json or "")
    assert image.text["generated_size"] == "1024x1024"
    assert (image.text["steps"], image.text["guidance_scale"]) == ("8", "0.0")
    assert image.text["negative_prompt"] == ""
    log = running.log()
    assert "model dall-e-3: qualities.standard.steps corrected from 25 to 8" in log
    assert "model dall-e-3: styles.vivid.negative_prompt corrected from 'dull" in log
