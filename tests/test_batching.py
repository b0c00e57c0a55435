"""Many clients at once, end to end through `easel serve`: batching across requests, backpressure,
cancellation on disconnect, deadlines, and faults that leave the server serving."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from easel.api.images.metering import CLIENT_CLOSED_REQUEST
from easel.engine.faults import OOM_ENV
from tests.images import decode_b64, size_of
from tests.server import RunningServer, create_key, start_server

SLOW_STEPS = 500
# The slow model's batches run 500 guided steps (several seconds even on a fast CPU), far past
# this deadline, so the deadline test does not depend on how busy the machine is.
DEADLINE_SECONDS = 3


def generate(client: openai.OpenAI, **fields: Any) -> dict[str, Any]:
    """One request; its images decoded, with the fields it was asked with."""
    result = client.images.generate(response_format="b64_json", **fields)
    images = [decode_b64(item.b64_json or "") for item in result.data]
    return {"fields": fields, "images": images, "revised": [i.revised_prompt for i in result.data]}


def in_parallel(calls: list[Callable[[], Any]]) -> list[Any]:
    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
        return [future.result() for future in futures]


def test_mixed_concurrent_requests_each_get_their_own_images(client: openai.OpenAI) -> None:
    requests: list[dict[str, Any]] = [
        {"model": "dall-e-2", "prompt": "a fox", "n": 2, "size": "256x256"},
        {"model": "dall-e-2", "prompt": "an owl", "n": 1, "size": "512x512"},
        {"model": "dall-e-2", "prompt": "a cat", "n": 3, "size": "1024x1024"},
        {"model": "dall-e-3", "prompt": "a city", "size": "1024x1024", "style": "natural"},
        {"model": "dall-e-3", "prompt": "a sea", "size": "1792x1024"},
        {"model": "dall-e-3", "prompt": "a hill", "size": "1024x1792"},
    ]
    results = in_parallel([functools.partial(generate, client, **r) for r in requests])
    for request, result in zip(requests, results, strict=True):
        images = result["images"]
        assert len(images) == request.get("n", 1)
        for image in images:
            assert image.size == size_of(request["size"])
            assert image.text["prompt"] == request["prompt"]
            assert image.text["model"] == request["model"]
        seeds = [int(image.text["seed"]) for image in images]
        assert seeds == list(range(seeds[0], seeds[0] + len(images)))
        if request["model"] == "dall-e-3":
            assert result["revised"][0] == images[0].text["revised_prompt"]
            assert request["prompt"] in result["revised"][0]


def test_concurrent_compatible_requests_share_one_pipeline_call(
    client: openai.OpenAI, server: RunningServer
) -> None:
    # A first request occupies dall-e-3 (its hd quality at the wide size: several seconds on the
    # tiny SDXL pipeline); the three compatible requests sent meanwhile wait together and run as
    # one batch of three images, while an incompatible size runs in a batch of its own.
    with ThreadPoolExecutor(5) as pool:
        first = pool.submit(
            generate, client, model="dall-e-3", prompt="first", size="1792x1024", quality="hd"
        )
        # Sent once the first has left the queue for its pipeline call (not after a fixed pause,
        # which a busy machine outlasts).
        wait_until_running(server, "dall-e-3")
        together = [
            pool.submit(
                generate, client, model="dall-e-3", prompt=f"together {i}", size="1024x1024"
            )
            for i in range(3)
        ]
        apart = pool.submit(generate, client, model="dall-e-3", prompt="apart", size="1792x1024")
        first.result()
        batch_sizes = [future.result()["images"][0].text["batch_images"] for future in together]
        apart_image = apart.result()["images"][0]
    assert batch_sizes == ["3", "3", "3"]
    assert apart_image.text["batch_images"] == "1"
    assert apart_image.size == (1792, 1024)


def wait_until_running(server: RunningServer, model: str, seconds: float = 60) -> None:
    """Until the model's one admitted request has left its queue: its pipeline call has begun."""
    deadline = time.monotonic() + seconds
    label = f'{{model="{model}"}}'
    while time.monotonic() < deadline:
        metrics = httpx.get(server.base_url + "/metrics", timeout=30).text
        if (
            sample(metrics, "easel_requests_in_flight" + label) == 1
            and sample(metrics, "easel_queue_depth" + label) == 0
        ):
            return
        time.sleep(0.05)
    raise AssertionError(f"{model}'s request never left its queue")


@pytest.fixture(scope="module")
def strained(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_sd: Path,
    tiny_sdxl: Path,
    broken_scheduler_pipeline: Path,
) -> Iterator[tuple[RunningServer, str]]:
    """A server with a small queue, a deadline, a very slow model, a faulty one, and the
    test-only out-of-memory hook set to fail any pipeline call of 3 or more 256x256 images."""
    data_dir = tmp_path_factory.mktemp("strained")
    key = create_key(data_dir)
    config = data_dir / "models.yaml"
    config.write_text(
        "models:\n"
        "  slow:\n"
        f"    source: {tiny_sd}\n"
        "    sizes: [256x256, 384x256]\n"
        "    default_size: 256x256\n"
        f"    qualities: {{standard: {{steps: {SLOW_STEPS}, guidance_scale: 7}}}}\n"
        "  faulty:\n"
        f"    source: {broken_scheduler_pipeline}\n"
        "    sizes: [256x256]\n"
        "    default_size: 256x256\n"
        "    qualities: {standard: {steps: 2, guidance_scale: 0}}\n"
    )
    running = start_server(
        data_dir,
        "--config",
        str(config),
        "--model",
        f"dall-e-2={tiny_sd}",
        "--model",
        f"dall-e-3={tiny_sdxl}",
        "--queue-images",
        "2",
        "--batch-images",
        "4",
        "--deadline",
        str(DEADLINE_SECONDS),
        env={OOM_ENV: str(3 * 256 * 256)},
    )
    yield running, key
    running.stop()


def post(server: RunningServer, key: str, timeout: float = 120, **body: Any) -> httpx.Response:
    return httpx.post(
        server.base_url + "/v1/images/generations",
        json={"response_format": "b64_json", **body},
        headers={"Authorization": f"Bearer {key}"},
        timeout=timeout,
    )


def wait_for_log(server: RunningServer, fragment: str, seconds: float = 90) -> str:
    """The first server log line containing `fragment`, waiting for it to be written."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for line in server.log().splitlines():
            if fragment in line:
                return line
        time.sleep(0.2)
    raise AssertionError(f"no log line with {fragment!r}:\n{server.log()[-4000:]}")


def test_full_queue_answers_429_at_once_and_deadline_ends_the_rest(
    strained: tuple[RunningServer, str],
) -> None:
    server, key = strained
    # At most 4 images run and 2 wait: of 8 concurrent requests at least 2 are refused.
    responses = in_parallel([lambda: post(server, key, model="slow", prompt="a snail")] * 8)
    refused = [r for r in responses if r.status_code == 429]
    accepted = [r for r in responses if r.status_code != 429]
    assert len(refused) >= 2
    for response in refused:
        error = response.json()["error"]
        assert error["code"] == "queue_full" and error["type"] == "requests"
        assert "`slow`" in error["message"]
        assert int(response.headers["retry-after"]) >= 1
        assert response.headers["x-request-id"]
    # The accepted ones cannot finish 500 steps in time: each ends with a clear 504, no hang.
    for response in accepted:
        assert response.status_code == 504, response.text
        error = response.json()["error"]
        assert (
            error["code"] == "deadline_exceeded"
            and f"{DEADLINE_SECONDS} seconds" in error["message"]
        )
    assert (
        post(server, key, model="dall-e-2", prompt="still serving", size="256x256").status_code
        == 200
    )


def test_gone_clients_queued_work_is_removed_and_abandoned_batch_stops(
    strained: tuple[RunningServer, str],
) -> None:
    server, key = strained
    # A runs (500 steps); B is another class (384x256), so it waits behind A. B's client gives up
    # first, then A's: B leaves the queue, and A's batch, with nobody left, stops at a step.
    with ThreadPoolExecutor(2) as pool:
        # Both clients give up before the deadline, so the cancellations are theirs.
        running = pool.submit(
            post, server, key, 2.0, model="slow", prompt="abandoned", size="256x256"
        )
        time.sleep(0.5)
        queued = pool.submit(post, server, key, 1.0, model="slow", prompt="gone", size="384x256")
        for future in (queued, running):
            with pytest.raises(httpx.ReadTimeout):
                future.result()
    removed = wait_for_log(
        server, "removed a request for 1 images from the queue: its client went away"
    )
    assert '"request_id": "req_' in removed  # logged under the request's own id
    stopped = wait_for_log(server, "every request in it was cancelled")
    step = int(stopped.split("after step ")[1].split(" of ")[0])
    assert 0 < step < SLOW_STEPS and f"of {SLOW_STEPS}" in stopped
    assert (
        post(server, key, model="dall-e-2", prompt="still serving", size="256x256").status_code
        == 200
    )


def test_out_of_memory_splits_the_batch_and_a_lone_image_fails_alone(
    strained: tuple[RunningServer, str],
) -> None:
    server, key = strained
    # Fault injection (the documented test-only hook, see the fixture): 4 images of 256x256 in one
    # call are "out of memory", 2 fit. The batch is split and every image still arrives.
    response = post(server, key, model="dall-e-2", prompt="four", n=4, size="512x512")
    assert response.status_code == 200, response.text
    images = [decode_b64(item["b64_json"]) for item in response.json()["data"]]
    assert [int(image.text["seed"]) - int(images[0].text["seed"]) for image in images] == [
        0,
        1,
        2,
        3,
    ]
    assert {image.text["batch_images"] for image in images} == {"2"}
    assert {image.size for image in images} == {(512, 512)}
    assert "retrying it in halves" in server.log()
    # One 512x512 SDXL image is over the injected limit by itself: it fails alone, clearly.
    failed = post(server, key, model="dall-e-3", prompt="too big")
    assert failed.status_code == 500
    error = failed.json()["error"]
    assert error["code"] == "out_of_memory" and "accelerator memory" in error["message"]
    assert failed.headers["x-should-retry"] == "false"
    assert post(server, key, model="dall-e-2", prompt="after", size="256x256").status_code == 200


def test_pipeline_exception_fails_only_its_batch(strained: tuple[RunningServer, str]) -> None:
    server, key = strained
    faulty, healthy = in_parallel(
        [
            lambda: post(server, key, model="faulty", prompt="a cat"),
            lambda: post(server, key, model="dall-e-2", prompt="a dog", size="256x256"),
        ]
    )
    assert faulty.status_code == 500
    assert faulty.json()["error"]["type"] == "server_error"
    assert "num_train_timesteps" not in faulty.text  # details stay in the log
    assert "faulty: a batch of 1 images failed" in server.log()
    assert healthy.status_code == 200
    assert post(server, key, model="faulty", prompt="again").status_code == 500
    assert post(server, key, model="dall-e-2", prompt="fine", size="256x256").status_code == 200


def test_a_client_that_leaves_is_recorded_as_499_everywhere(
    strained: tuple[RunningServer, str],
) -> None:
    server, key = strained
    counted = f'easel_requests_total{{model="slow",status="{CLIENT_CLOSED_REQUEST}"}}'
    failed = 'easel_requests_total{model="slow",status="500"}'
    before = httpx.get(server.base_url + "/metrics", timeout=30).text
    with pytest.raises(httpx.ReadTimeout):
        post(server, key, 1.0, model="slow", prompt="a snail", size="256x256", user="leaver")
    # The request's own line, whose status its usage record shares, and its access line.
    line = wait_for_json_log(server, lambda line: line.get("user") == "leaver")
    assert line["message"] == "generation failed" and line["status"] == CLIENT_CLOSED_REQUEST
    access = wait_for_json_log(
        server,
        lambda other: (
            other["request_id"] == line["request_id"] and other["logger"] == "easel.access"
        ),
    )
    assert access["status"] == CLIENT_CLOSED_REQUEST
    after = httpx.get(server.base_url + "/metrics", timeout=30).text
    assert sample(after, counted) == sample(before, counted) + 1
    assert sample(after, failed) == sample(before, failed)


def wait_for_json_log(
    server: RunningServer, matches: Callable[[dict[str, Any]], bool], seconds: float = 30
) -> dict[str, Any]:
    """The first JSON log line that `matches`, waiting for it to be written."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for text in server.log().splitlines():
            if not text.startswith("{"):
                continue
            line: dict[str, Any] = json.loads(text)
            if matches(line):
                return line
        time.sleep(0.2)
    raise AssertionError(f"no matching log line:\n{server.log()[-4000:]}")


def sample(metrics: str, name: str) -> float:
    """A Prometheus sample's value in a /metrics page (0 while it has none)."""
    values = (float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(name))
    return next(values, 0.0)
