"""The prompt rewriter through the HTTP API: dall-e-3's expansion, translation for English-only
encoders, what `revised_prompt` and the PNG text show, and the fallback to the prompt as written
when the rewriter fails, times out or cannot be reached.

`ChatServer` stands in for the operator's own OpenAI-compatible chat server (vLLM, Ollama...),
which is not Easel's component: it answers with fixed texts and records what it was asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from prometheus_client import REGISTRY

from easel.catalog import Catalog, ModelSpec
from easel.catalog.defaults import DEFAULT_MODELS, merged_entry
from easel.devtools.tiny_chat_model import build_tiny_chat_model
from easel.prompts.revise import revise_prompt
from easel.prompts.rewriter import open_rewriter
from easel.prompts.sources import LocalModelSource
from easel.settings import Settings, SettingsError, load_settings
from tests.guided_presets import guided_dall_e_3
from tests.images import decode_b64, images_of
from tests.inprocess import InProcessApp, running_app

pytestmark = pytest.mark.anyio

# The seed document's own example prompt.
SEED_PROMPT = "一只在太空中行走的可爱猫咪,写实风格"
ENGLISH_EXPANSION = "A photorealistic cute cat in a small spacesuit walking through outer space"
CHINESE_EXPANSION = "一只穿着宇航服的可爱猫咪在星空中行走,写实摄影风格"
TRANSLATION = "a cute cat walking in space, realistic style"
TIMEOUT_SECONDS = 2.0
FAST = {"standard": {"steps": 2, "guidance_scale": 0.0}, "hd": {"steps": 2, "guidance_scale": 0.0}}


class ChatServer:
    """A chat-completions endpoint on a free loopback port, answering like a translating and
    expanding model; `delay` and `status` make it slow or failing."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.delay = 0.0
        self.status = 200
        chat = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                chat.requests.append(body)
                time.sleep(chat.delay)
                system = body["messages"][0]["content"]
                payload = json.dumps(
                    {
                        "id": "chatcmpl-test",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": chat.answer(system)},
                                "finish_reason": "stop",
                            }
                        ],
                    }
                ).encode()
                # Easel stops waiting for a slow answer: writing it then finds the socket closed.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.send_response(chat.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @staticmethod
    def answer(system: str) -> str:
        if system.startswith("Translate"):
            return TRANSLATION
        return CHINESE_EXPANSION if "Chinese" in system else ENGLISH_EXPANSION

    def prompts(self) -> list[str]:
        return [request["messages"][1]["content"] for request in self.requests]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def chat_server() -> Iterator[ChatServer]:
    server = ChatServer()
    yield server
    server.stop()


@pytest.fixture
def chat(chat_server: ChatServer) -> ChatServer:
    """The module's chat server, answering at once and successfully, its record cleared."""
    chat_server.requests.clear()
    chat_server.delay, chat_server.status = 0.0, 200
    return chat_server


def _catalog(path: Path, tiny_sd: Path, tiny_zimage: Path) -> Catalog:
    # dall-e-2 and dall-e-3 keep their rules (translate, expand) on tiny SD's English-only CLIP;
    # dall-e-3's rules under another name on Z-Image's Qwen encoder, which reads Chinese; and a
    # model on Z-Image with the default rule (translate).
    models = {
        "dall-e-2": {"source": str(tiny_sd)},
        "dall-e-3": {"source": str(tiny_sd), "qualities": FAST},
        "dall-e-3-on-z-image": merged_entry(
            DEFAULT_MODELS["dall-e-3"], {"source": str(tiny_zimage), "qualities": FAST}
        ),
        "z-image": {"source": str(tiny_zimage), "qualities": FAST, "default_quality": "standard"},
    }
    path.write_text(yaml.safe_dump({"models": models}, allow_unicode=True), encoding="utf-8")
    return Catalog.build(path)


@pytest.fixture(scope="module")
async def rewriting_app(
    anyio_backend: str,
    tmp_path_factory: pytest.TempPathFactory,
    tiny_sd: Path,
    tiny_zimage: Path,
    chat_server: ChatServer,
) -> AsyncIterator[InProcessApp]:
    folder = tmp_path_factory.mktemp("rewriting")
    settings = Settings(
        data_dir=folder,
        prompt_rewriter=chat_server.url,
        prompt_rewriter_model="operator-model",
        prompt_rewrite_timeout_seconds=TIMEOUT_SECONDS,
    )
    async with running_app(settings, _catalog(folder / "easel.yaml", tiny_sd, tiny_zimage)) as app:
        yield app


async def _generate(sdk: openai.AsyncOpenAI, model: str, prompt: str) -> tuple[str | None, Any]:
    """The response's revised_prompt and the PNG's text of one image."""
    result = await sdk.images.generate(model=model, prompt=prompt, response_format="b64_json")
    image = images_of(result)[0]
    return image.revised_prompt, decode_b64(image.b64_json or "").text


def _fallbacks(reason: str) -> float:
    return (
        REGISTRY.get_sample_value("easel_prompt_rewrite_fallbacks_total", {"reason": reason}) or 0
    )


async def test_the_seed_prompt_on_dall_e_3_and_clip_is_drawn_from_an_english_rewrite(
    rewriting_app: InProcessApp, chat: ChatServer
) -> None:
    revised, text = await _generate(rewriting_app.sdk(), "dall-e-3", SEED_PROMPT)
    # dall-e-3's default style (vivid) adds its English words to the English rewrite.
    assert revised is not None and revised.startswith(ENGLISH_EXPANSION + ", vivid")
    assert text["revised_prompt"] == revised  # exactly what the pipeline read
    assert text["prompt"] == SEED_PROMPT
    [request] = chat.requests
    assert request["model"] == "operator-model"
    assert "English" in request["messages"][0]["content"]
    assert "quotation marks" in request["messages"][0]["content"]


async def test_the_seed_prompt_on_an_encoder_that_reads_chinese_is_expanded_in_chinese(
    rewriting_app: InProcessApp, chat: ChatServer
) -> None:
    revised, text = await _generate(rewriting_app.sdk(), "dall-e-3-on-z-image", SEED_PROMPT)
    # No English style words are appended to a Chinese prompt.
    assert revised == text["revised_prompt"] == CHINESE_EXPANSION
    assert "Chinese" in chat.requests[0]["messages"][0]["content"]


async def test_translation_only_for_prompts_the_encoder_cannot_read(
    rewriting_app: InProcessApp, chat: ChatServer
) -> None:
    sdk = rewriting_app.sdk()
    revised, text = await _generate(sdk, "dall-e-2", "a red apple on a wooden table")
    assert revised is None and text["revised_prompt"] == "a red apple on a wooden table"
    assert chat.requests == []  # an English prompt to an English encoder never reaches it
    revised, text = await _generate(sdk, "z-image", "一座黎明时分的灯塔,水彩画")
    assert revised is None and text["revised_prompt"] == "一座黎明时分的灯塔,水彩画"
    assert chat.requests == []  # nor does Chinese to an encoder that reads it
    revised, text = await _generate(sdk, "dall-e-2", "一只猫坐在窗台上")
    assert revised == text["revised_prompt"] == TRANSLATION
    assert text["prompt"] == "一只猫坐在窗台上"
    assert chat.prompts() == ["一只猫坐在窗台上"]
    assert chat.requests[0]["messages"][0]["content"].startswith("Translate")


async def test_a_latin_script_prompt_in_another_language_is_translated_for_clip(
    rewriting_app: InProcessApp, chat: ChatServer
) -> None:
    sdk = rewriting_app.sdk()
    revised, _ = await _generate(
        sdk, "dall-e-2", "Eiffel Tower at night, 4k, trending on artstation"
    )
    assert revised is None and chat.requests == []
    french = "un chat qui marche dans l'espace, style réaliste"
    revised, text = await _generate(sdk, "dall-e-2", french)
    assert revised == text["revised_prompt"] == TRANSLATION
    assert chat.prompts() == [french]


async def test_the_log_shows_a_rewrite_by_lengths_and_languages_unless_prompts_are_logged(
    rewriting_app: InProcessApp,
    chat: ChatServer,
    tiny_sd: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="easel.prompts")
    await _generate(rewriting_app.sdk(), "dall-e-2", "一只兔子在草地上")
    [fields] = [vars(r) for r in caplog.records if r.getMessage() == "prompt rewritten (translate)"]
    assert (fields["prompt_chars"], fields["prompt_language"]) == (8, "zh")
    assert (fields["revised_chars"], fields["revised_language"]) == (len(TRANSLATION), "en")
    assert "prompt" not in fields and "兔子" not in caplog.text
    caplog.clear()
    # With EASEL_LOG_PROMPTS, the texts too.
    rewriter = open_rewriter(
        chat.url, model="operator-model", timeout_seconds=TIMEOUT_SECONDS, log_prompts=True
    )
    spec = Catalog.build(overrides=[f"dall-e-2={tiny_sd}"]).get("dall-e-2")
    plan = spec.plan(prompt="一只兔子在草地上", n=1, size=None, quality=None, style=None)
    assert (await revise_prompt(rewriter, spec, plan)).prompt == TRANSLATION
    [fields] = [vars(r) for r in caplog.records if r.getMessage() == "prompt rewritten (translate)"]
    assert (fields["prompt"], fields["revised_prompt"]) == ("一只兔子在草地上", TRANSLATION)
    assert rewriter is not None
    await rewriter.close()


async def test_equal_prompts_are_rewritten_once(
    rewriting_app: InProcessApp, chat: ChatServer
) -> None:
    sdk = rewriting_app.sdk()
    first, _ = await _generate(sdk, "dall-e-2", "一只狗在雪地里奔跑")
    second, _ = await _generate(sdk, "dall-e-2", "一只狗在雪地里奔跑")
    assert first == second == TRANSLATION
    assert chat.prompts() == ["一只狗在雪地里奔跑"]


async def test_a_failing_rewriter_leaves_the_prompt_as_written_and_is_counted(
    rewriting_app: InProcessApp, chat: ChatServer
) -> None:
    chat.status = 500
    before = _fallbacks("error")
    revised, text = await _generate(rewriting_app.sdk(), "dall-e-2", "一只鸟在树枝上唱歌")
    assert revised is None and text["revised_prompt"] == "一只鸟在树枝上唱歌"
    assert _fallbacks("error") == before + 1


async def test_a_slow_rewriter_is_given_up_on_after_the_time_limit(
    rewriting_app: InProcessApp, chat: ChatServer
) -> None:
    chat.delay = TIMEOUT_SECONDS * 3
    before = _fallbacks("timeout")
    started = time.monotonic()
    revised, text = await _generate(rewriting_app.sdk(), "dall-e-2", "一条鱼在河里游泳")
    assert time.monotonic() - started < chat.delay
    assert revised is None and text["revised_prompt"] == "一条鱼在河里游泳"
    assert _fallbacks("timeout") == before + 1


async def test_an_unreachable_rewriter_is_held_back_for_a_while(chat_server: ChatServer) -> None:
    # A port nothing listens on: the first rewrite finds the server away, the next is not tried.
    closed = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    url = f"http://127.0.0.1:{closed.server_address[1]}/v1"
    closed.server_close()
    rewriter = open_rewriter(url, model="operator-model", timeout_seconds=TIMEOUT_SECONDS)
    assert rewriter is not None
    before = _fallbacks("unavailable")
    assert await rewriter.rewrite("translate", SEED_PROMPT, "en") is None
    started = time.monotonic()
    assert await rewriter.rewrite("translate", "一只猫", "en") is None
    assert time.monotonic() - started < 0.5
    assert _fallbacks("unavailable") == before + 2
    await rewriter.close()


@pytest.fixture(scope="module")
def tiny_chat_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_chat_model(tmp_path_factory.mktemp("models") / "tiny-chat")


async def test_the_in_process_rewriter_translates_through_a_local_model(
    tmp_path: Path, tiny_sd: Path, tiny_zimage: Path, tiny_chat_model: Path
) -> None:
    # A random-weight model answers gibberish: what matters is that its answer, whatever it is,
    # is what the pipeline reads and what the response shows.
    settings = Settings(
        data_dir=tmp_path, prompt_rewriter=str(tiny_chat_model), prompt_rewrite_timeout_seconds=120
    )
    catalog = _catalog(tmp_path / "easel.yaml", tiny_sd, tiny_zimage)
    async with running_app(settings, catalog) as app:
        sdk = app.sdk()
        # Two prompts at once: the model rewrites them in one call.
        (first, first_text), (second, second_text) = await asyncio.gather(
            _generate(sdk, "dall-e-2", SEED_PROMPT), _generate(sdk, "dall-e-2", "一只猫")
        )
        assert first and first != SEED_PROMPT and first == first_text["revised_prompt"]
        assert second and second != "一只猫" and second == second_text["revised_prompt"]
        rewriter = app.app.state.services.prompt_rewriter
        source = rewriter.source
        assert isinstance(source, LocalModelSource)
        assert source.resident_bytes() > 0
        source.release()
        assert source.resident_bytes() == 0


def test_a_chat_server_rewriter_needs_a_model_name() -> None:
    with pytest.raises(SettingsError, match="EASEL_PROMPT_REWRITER_MODEL"):
        load_settings({"prompt_rewriter": "http://127.0.0.1:8080/v1"})


def test_english_style_words_never_go_onto_a_prompt_in_another_language() -> None:
    # dall-e-3 (with styles that also set guidance and a negative prompt) with the rewriter off or
    # failed: the Chinese prompt goes as written, and says so; the rest of the style still applies.
    spec = ModelSpec(name="dall-e-3", **guided_dall_e_3("stabilityai/sdxl-base"))
    plan = spec.plan(prompt=SEED_PROMPT, n=1, size=None, quality=None, style="vivid")
    assert plan.prompt == plan.revised_prompt == SEED_PROMPT
    vivid = spec.styles["vivid"]
    assert (plan.guidance_scale, plan.negative_prompt) == (
        vivid.guidance_scale,
        vivid.negative_prompt,
    )
    english = spec.plan(prompt="a cat", n=1, size=None, quality=None, style="vivid")
    assert english.prompt == vivid.prompt_template.format(prompt="a cat")
