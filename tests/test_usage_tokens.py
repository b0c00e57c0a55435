"""`usage` on GPT image responses, as OpenAI reports it: text tokens by the model's own tokenizer,
output tokens from OpenAI's table, kept in the usage records and shown by `easel usage`."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import openai
import pytest
from sqlalchemy import text
from transformers import AutoTokenizer

from easel.db.database import Database
from easel.db.migrations import upgrade
from easel.usage.store import UsageStore
from tests.gpt_server import start_gpt_server
from tests.server import RunningServer, easel, sdk_client

# OpenAI's output tokens per image (openai-wire.md), for the sizes and qualities of the GPT names.
Quality = Literal["low", "medium", "high"]
TABLE: dict[tuple[Quality, str], int] = {
    ("low", "1024x1024"): 272,
    ("low", "1024x1536"): 408,
    ("low", "1536x1024"): 400,
    ("medium", "1024x1024"): 1056,
    ("medium", "1024x1536"): 1584,
    ("medium", "1536x1024"): 1568,
    ("high", "1024x1024"): 4160,
    ("high", "1024x1536"): 6240,
    ("high", "1536x1024"): 6208,
}
# Longer than CLIP's 77-token window: usage counts every token the user sent.
LONG_PROMPT = " ".join(["a lighthouse on a rocky cliff, waves, gulls, dusk light"] * 12)


@pytest.fixture(scope="module")
def gpt_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_sd: Path, tiny_sdxl: Path
) -> Iterator[RunningServer]:
    running = start_gpt_server(tmp_path_factory.mktemp("usage"), tiny_sd, tiny_sdxl)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def gpt(gpt_server: RunningServer) -> openai.OpenAI:
    return sdk_client(gpt_server)


def text_tokens(pipeline: Path, prompt: str) -> int:
    return len(AutoTokenizer.from_pretrained(pipeline / "tokenizer").tokenize(prompt))


@pytest.mark.parametrize(("quality", "size"), sorted(TABLE))
def test_output_tokens_follow_openais_table(
    gpt: openai.OpenAI, tiny_sd: Path, quality: Quality, size: str
) -> None:
    # gpt-image-1-mini runs on the SD 1.x layout in tests (tests/gpt_server.py).
    result = gpt.images.generate(
        model="gpt-image-1-mini",
        prompt="a lighthouse",
        size=size,
        quality=quality,
    )
    usage = result.usage
    assert usage is not None
    assert usage.output_tokens == TABLE[(quality, size)]
    assert usage.input_tokens_details.text_tokens == text_tokens(tiny_sd, "a lighthouse")
    assert usage.input_tokens_details.image_tokens == 0
    assert usage.input_tokens == usage.input_tokens_details.text_tokens
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens


def test_every_token_of_a_long_prompt_counts_by_the_models_tokenizer(
    gpt: openai.OpenAI, tiny_sdxl: Path
) -> None:
    result = gpt.images.generate(model="gpt-image-1", prompt=LONG_PROMPT, quality="low", n=2)
    assert result.usage is not None
    expected = text_tokens(tiny_sdxl, LONG_PROMPT)
    assert expected > 77
    assert result.usage.input_tokens_details.text_tokens == expected
    assert result.usage.output_tokens == 2 * TABLE[("low", "1024x1024")]


def test_free_gpt_image_2_sizes_scale_the_square_by_area(gpt: openai.OpenAI) -> None:
    # 2048x1024 has twice the square's pixels: twice its tokens.
    result = gpt.images.generate(
        model="gpt-image-2", prompt="a lighthouse", size="2048x1024", quality="low"
    )
    assert result.usage is not None
    assert result.usage.output_tokens == 2 * TABLE[("low", "1024x1024")]


def test_dall_e_names_report_no_usage(gpt: openai.OpenAI) -> None:
    result = gpt.images.generate(model="dall-e-2", prompt="a lighthouse", size="256x256")
    assert result.usage is None


def test_usage_records_keep_the_tokens_and_easel_usage_shows_them(
    gpt: openai.OpenAI, gpt_server: RunningServer
) -> None:
    result = gpt.images.generate(model="gpt-image-1.5", prompt="a red kite", quality="low")
    assert result.usage is not None
    rows = list(
        csv.DictReader(
            io.StringIO(
                easel(
                    "usage",
                    "--model",
                    "gpt-image-1.5",
                    "--csv",
                    "-",
                    data_dir=gpt_server.data_dir,
                ).stdout
            )
        )
    )
    assert sum(int(row["input_tokens"]) for row in rows) == result.usage.input_tokens
    assert sum(int(row["output_tokens"]) for row in rows) == result.usage.output_tokens
    table = easel("usage", "--model", "gpt-image-1.5", data_dir=gpt_server.data_dir).stdout
    assert "input tokens" in table and "output tokens" in table


def test_a_database_at_0003_keeps_its_records_with_no_tokens(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'easel.db'}"
    old = Database(url, migrate=False)
    upgrade(old.engine, "0003")
    with old.engine.begin() as connection:  # a record written before tokens were kept
        connection.execute(
            text(
                "INSERT INTO usage_records (request_id, created_at, day, key_id, model, size, "
                "quality, n, images_delivered, queued_ms, generating_ms, status) VALUES "
                "('req_old', :now, '2026-11-01', 'key_old', 'dall-e-2', '256x256', 'standard', "
                "1, 1, 0, 1, 200)"
            ),
            {"now": datetime.now(UTC)},
        )
    old.close()
    database = Database(url)
    try:
        (record,) = UsageStore(database).records()
        assert record.request_id == "req_old"
        assert (record.input_text_tokens, record.input_image_tokens, record.output_tokens) == (
            0,
            0,
            0,
        )
    finally:
        database.close()
