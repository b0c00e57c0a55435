"""Prometheus metrics move as requests flow; /healthz and /readyz; JSON logs with the request id,
never the key's secret, and no prompt unless asked for."""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.gpt_server import GPT_MODELS
from tests.logs import log_lines
from tests.server import RunningServer

# Each sample's value by its metric name and sorted labels.
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(server: RunningServer) -> Samples:
    response = httpx.get(server.base_url + "/metrics", timeout=30)
    assert response.status_code == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_ready(server: RunningServer) -> httpx.Response:
    deadline = time.monotonic() + 120
    while True:
        response = httpx.get(server.base_url + "/readyz", timeout=30)
        if response.status_code == 200 or time.monotonic() > deadline:
            return response
        assert response.status_code == 503 and response.headers["Retry-After"]
        assert response.json()["status"] == "not_ready"
        time.sleep(0.2)


def test_health_and_readiness(server: RunningServer) -> None:
    assert httpx.get(server.base_url + "/healthz").json() == {"status": "ok"}
    ready = wait_ready(server)
    assert ready.status_code == 200, ready.text
    body = ready.json()
    # What the memory budget holds: tests/test_memory_budget.py reads it.
    assert body.pop("memory")["budget_bytes"] > 0
    assert body == {
        "status": "ready",
        "models": dict.fromkeys(["dall-e-2", "dall-e-3", *GPT_MODELS], "ready"),
        "database": "ok",
    }


def test_metrics_move_as_requests_flow(server: RunningServer, client: openai.OpenAI) -> None:
    wait_ready(server)
    before = scrape(server)
    client.images.generate(
        model="dall-e-2", prompt="metrics", n=2, size="256x256", response_format="b64_json"
    )
    with pytest.raises(openai.BadRequestError):
        client.images.generate(model="dall-e-2", prompt="metrics", n=11)
    after = scrape(server)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("easel_requests_total", model="dall-e-2", status="200") == 1
    assert moved("easel_requests_total", model="dall-e-2", status="400") == 1
    assert moved("easel_images_generated_total", model="dall-e-2") == 2
    for histogram in ("easel_queue_seconds", "easel_generation_seconds", "easel_encoding_seconds"):
        assert moved(f"{histogram}_count", model="dall-e-2") == 1, histogram
    assert moved("easel_generation_seconds_sum", model="dall-e-2") > 0
    assert moved("easel_batch_size_count", model="dall-e-2") == 1
    assert moved("easel_batch_size_sum", model="dall-e-2") == 2
    assert value(after, "easel_queue_depth", model="dall-e-2") == 0
    assert value(after, "easel_requests_in_flight", model="dall-e-2") == 0
    assert value(after, "easel_model_ready", model="dall-e-3", state="ready") == 1
    assert value(after, "easel_model_load_seconds", model="dall-e-2") > 0


def test_logs_are_json_with_request_ids_and_no_secrets_or_prompts(
    server: RunningServer, client: openai.OpenAI, api_key: str
) -> None:
    prompt = "a secret lighthouse drawn for the log test"
    response = client.images.with_raw_response.generate(
        model="dall-e-2", prompt=prompt, size="256x256", response_format="b64_json"
    )
    request_id = response.headers["x-request-id"]
    mine = log_lines(server, request_id, count=2)
    generation = next(line for line in mine if line["logger"] == "easel.generation")
    assert generation["model"] == "dall-e-2" and generation["images_delivered"] == 1
    assert generation["key_id"].startswith("key_") and generation["prompt_chars"] == len(prompt)
    access = next(line for line in mine if line["logger"] == "easel.access")
    assert access["status"] == 200 and access["key_id"] == generation["key_id"]
    assert api_key not in server.log() and prompt not in server.log()
