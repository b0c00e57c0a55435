"""Easel on Ray Serve, end to end: one local Ray instance (CPU) for the whole module, the app
deployed by `easel cluster serve`, driven by the openai SDK, images in a local S3-compatible store.

All Ray tests live here so the suite starts Ray once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import openai
import pytest
import ray
import yaml
from ray import serve
from ray._private.worker import RayContext
from ray.serve._private.common import DeploymentStatus

from easel.api.images.serving import REPLICA_HEADER
from easel.background import cancel_and_wait
from easel.catalog import GenerationPlan
from easel.cluster.config_file import APP_NAME
from easel.cluster.engine_proxy import DeploymentEngine
from easel.cluster.groups import deployment_name
from easel.cluster.matting import MATTING_NAME
from easel.engine.loader import PipelineKey
from easel.engine.types import PreviewRequest
from tests.images import decode_b64, fetch, images_of
from tests.s3 import BUCKET, S3Server
from tests.server import create_key, free_port

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SLOW_STEPS = 400


@dataclass
class Cluster:
    base_url: str
    api_key: str
    serve_logs: Path  # the Ray session's Serve logs: one file per replica
    shared: str  # the deployment serving dall-e-2 and gpt-image-1, which share a pipeline

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(
            api_key=self.api_key, base_url=self.base_url + "/v1", max_retries=0, timeout=180
        )


def _catalog(tiny_sd: Path, tiny_sdxl: Path) -> dict[str, Any]:
    # dall-e-2 and gpt-image-1 share tiny_sd, so one deployment of two replicas.
    shared_deployment = {
        "gpus_per_replica": 0,
        "cpus_per_replica": 0.5,
        "min_replicas": 2,
        "max_replicas": 2,
        "max_ongoing_requests": 4,
    }
    return {
        "models": {
            # A few steps, so requests last long enough to be caught mid-run.
            "dall-e-2": {
                "source": str(tiny_sd),
                "qualities": {"standard": {"steps": 6, "guidance_scale": 0.0}},
                "deployment": shared_deployment,
            },
            # One replica taking one request at a time with room for one more waiting: full fast.
            "dall-e-3": {
                "source": str(tiny_sdxl),
                "deployment": {
                    "cpus_per_replica": 0.25,
                    "max_ongoing_requests": 1,
                    "max_queued_requests": 1,
                },
            },
            "broken": {"source": "/nonexistent/pipeline", "deployment": {"cpus_per_replica": 0}},
            # Streams (GPT names only): "high" has room for 2 partial images; "low" runs long
            # enough to be left mid-run; "medium" batches with dall-e-2's "standard".
            "gpt-image-1": {
                "source": str(tiny_sd),
                "qualities": {
                    "low": {"steps": SLOW_STEPS, "guidance_scale": 0.0},
                    "medium": {"steps": 6, "guidance_scale": 0.0},
                    "high": {"steps": 8, "guidance_scale": 0.0},
                },
                "deployment": shared_deployment,
            },
        }
    }


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_sd: Path,
    tiny_sdxl: Path,
    tiny_matting: Path,
    s3: S3Server,
) -> Iterator[Cluster]:
    data_dir = tmp_path_factory.mktemp("cluster-data")
    config = data_dir / "catalog.yaml"
    config.write_text(yaml.safe_dump(_catalog(tiny_sd, tiny_sdxl)))
    api_key = create_key(data_dir)
    with pytest.MonkeyPatch.context() as env:
        # The Ray processes inherit the environment: the AWS settings reach the replicas.
        for name, value in s3.env.items():
            env.setenv(name, value)
        env.setenv("EASEL_MATTING_MODEL", str(tiny_matting))
        ray_context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        # A local instance's context (typed as the base of it and a Ray Client's) has its session
        # directory, where the replicas' logs are: not `session_latest`, which other Ray users of
        # this machine may move.
        assert isinstance(ray_context, RayContext)
        session_dir = ray_context.address_info["session_dir"]
        assert session_dir is not None
        serve_logs = Path(session_dir) / "logs" / "serve"
        try:
            port = free_port()
            deploy = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "easel",
                    "cluster",
                    "serve",
                    "--address",
                    ray.get_runtime_context().gcs_address,
                    "--detach",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--data-dir",
                    str(data_dir),
                    "--config",
                    str(config),
                    "--storage",
                    f"s3://{BUCKET}/cluster",
                    "--ingress-cpus",
                    "0.25",
                    # The replicas log each batch they run, with the names it served.
                    "--log-level",
                    "debug",
                ],
                capture_output=True,
                text=True,
                timeout=400,
            )
            assert deploy.returncode == 0, deploy.stdout + deploy.stderr
            shared = deployment_name(PipelineKey.of(str(tiny_sd)))
            yield Cluster(f"http://127.0.0.1:{port}", api_key, serve_logs, shared)
        finally:
            serve.shutdown()
            ray.shutdown()


def _small_image(client: openai.OpenAI, prompt: str) -> Any:
    """One 256x256 dall-e-2 image, checked; returns the raw response (for its headers)."""
    raw = client.images.with_raw_response.generate(
        model="dall-e-2", prompt=prompt, size="256x256", response_format="b64_json"
    )
    assert decode_b64(images_of(raw.parse())[0].b64_json or "").size == (256, 256)
    return raw


def _replica(response: Any) -> str:
    """`model:tiny_sd-1a2b3c#abc123 pid=... node=...` -> the replica's deployment#id."""
    return str(response.headers[REPLICA_HEADER]).split()[0]


def _pid(response: Any) -> int:
    field = next(f for f in response.headers[REPLICA_HEADER].split() if f.startswith("pid="))
    return int(field.removeprefix("pid="))


def test_images_through_the_cluster_have_the_requested_sizes(
    cluster: Cluster, s3: S3Server
) -> None:
    client = cluster.client()
    b64 = client.images.generate(
        model="dall-e-2", prompt="a lighthouse", n=2, size="512x512", response_format="b64_json"
    )
    assert [decode_b64(d.b64_json or "").size for d in images_of(b64)] == [(512, 512), (512, 512)]

    result = client.images.generate(model="dall-e-3", prompt="a city", size="1792x1024")
    url = images_of(result)[0].url or ""
    # Stored in the object store and fetched through its presigned URL.
    assert url.startswith(f"{s3.endpoint}/{BUCKET}/cluster/")
    assert "X-Amz-Signature=" in urlsplit(url).query
    image = fetch(url)
    assert image.size == (1792, 1024)
    assert image.text["model"] == "dall-e-3"
    revised_prompt = images_of(result)[0].revised_prompt
    assert revised_prompt and "a city" in revised_prompt


def test_requests_are_served_by_both_replicas(cluster: Cluster) -> None:
    client = cluster.client()

    def one(i: int) -> str:
        raw = _small_image(client, f"spread {i}")
        # One request id, as from one machine (Ray's proxy and Easel agree on it).
        assert len(raw.headers.get_list("x-request-id")) == 1
        return _replica(raw)

    with ThreadPoolExecutor(8) as pool:
        replicas = set(pool.map(one, range(16)))
    assert len(replicas) == 2, replicas
    assert all(r.startswith(cluster.shared + "#") for r in replicas)


def test_names_that_share_a_pipeline_share_a_deployment_and_its_batches(
    cluster: Cluster, tiny_sdxl: Path
) -> None:
    overview = serve.status().applications[APP_NAME]
    # dall-e-2 and gpt-image-1 in one deployment; dall-e-3 and broken, on other sources, apart.
    assert set(overview.deployments) == {
        "ingress",
        MATTING_NAME,
        cluster.shared,
        deployment_name(PipelineKey.of(str(tiny_sdxl))),
        deployment_name(PipelineKey.of("/nonexistent/pipeline")),
    }
    client = cluster.client()

    def one(i: int) -> str:
        # Requests of both names with the same size, steps and guidance: they may share a call.
        if i % 2:
            raw = client.images.with_raw_response.generate(
                model="dall-e-2", prompt=f"shared {i}", response_format="b64_json"
            )
        else:
            raw = client.images.with_raw_response.generate(
                model="gpt-image-1", prompt=f"shared {i}", size="1024x1024", quality="medium"
            )
        assert len(images_of(raw.parse())) == 1
        return _replica(raw)

    shared_calls = ("ran a batch of", "dall-e-2", "gpt-image-1")
    before = len(_replica_log_lines(cluster, *shared_calls))
    for _ in range(3):  # which replica each request meets is Ray's choice: a few tries
        with ThreadPoolExecutor(8) as pool:
            replicas = set(pool.map(one, range(8)))
        assert all(r.startswith(cluster.shared + "#") for r in replicas), replicas
        time.sleep(1)  # the replicas' log files are written asynchronously
        if len(_replica_log_lines(cluster, *shared_calls)) > before:
            break
    else:
        raise AssertionError("no pipeline call served both names")
    # Each name still has its own state, which the ingress reads from its deployment.
    states = httpx.get(cluster.base_url + "/readyz", timeout=30).json()["models"]
    assert (states["dall-e-2"], states["gpt-image-1"], states["broken"]) == (
        "ready",
        "ready",
        "failed",
    )


def test_api_errors_come_back_in_openais_envelope(cluster: Cluster) -> None:
    client = cluster.client()
    # Raised by the ingress (validation) ...
    with pytest.raises(openai.BadRequestError) as bad:
        client.images.generate(model="dall-e-3", prompt="a cat", n=2)
    assert bad.value.code == "integer_above_max_value"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(
            api_key="sk-wrong", base_url=cluster.base_url + "/v1", max_retries=0
        ).models.list()
    # ... and raised inside a model replica: the Easel error crosses the Ray boundary intact.
    with pytest.raises(openai.InternalServerError) as unavailable:
        client.images.generate(model="broken", prompt="a cat", size="256x256")
    assert unavailable.value.status_code == 503
    assert unavailable.value.code == "model_unavailable"
    assert unavailable.value.response.headers["retry-after"] == "30"
    # Where the weights were looked for is the operator's business: the replica's log has it.
    assert "/nonexistent/pipeline" not in unavailable.value.message


def test_full_queue_answers_429_with_retry_after(cluster: Cluster) -> None:
    def one(i: int) -> httpx.Response:
        return httpx.post(
            cluster.base_url + "/v1/images/generations",
            json={"model": "dall-e-3", "prompt": f"queue {i}", "response_format": "b64_json"},
            headers={"Authorization": f"Bearer {cluster.api_key}"},
            timeout=180,
        )

    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(one, range(6)))
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) == {200, 429}, statuses
    for response in responses:
        if response.status_code == 429:
            assert int(response.headers["retry-after"]) >= 1
            error = response.json()["error"]
            assert (error["type"], error["code"]) == ("requests", "server_busy")


def test_streamed_partial_images_cross_from_the_replica(cluster: Cluster) -> None:
    client = cluster.client()
    raw = client.images.with_raw_response.generate(
        model="gpt-image-1",
        prompt="a lighthouse",
        stream=True,
        partial_images=2,
        quality="high",
        size="1024x1536",
    )
    events = list(raw.parse())
    assert [event.type for event in events] == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    assert [getattr(event, "partial_image_index", None) for event in events] == [0, 1, None]
    assert all(decode_b64(event.b64_json).size == (1024, 1536) for event in events)
    # The stream's headers leave before its image is made, so no x-easel-replica: the model's
    # replica names the request (Ray's id, which Easel adopts) in its own log instead.
    request_id = raw.headers["x-request-id"]
    call = _replica_log_line(cluster, request_id, "generate_with_previews")
    assert cluster.shared in call

    events = list(
        client.images.generate(model="gpt-image-1", prompt="a cat", stream=True, quality="medium")
    )
    assert [event.type for event in events] == ["image_generation.completed"]


def test_transparent_backgrounds_are_cut_out_by_the_matting_deployment(cluster: Cluster) -> None:
    client = cluster.client()
    (model,) = (m for m in client.models.list() if m.id == "gpt-image-1")
    assert "transparent" in (model.model_extra or {})["easel"]["backgrounds"]
    result = client.images.generate(
        model="gpt-image-1",
        prompt="a fox",
        quality="medium",
        background="transparent",
        output_format="png",
    )
    image = decode_b64(images_of(result)[0].b64_json or "")
    assert (image.mode, image.size) == ("RGBA", (1024, 1024))
    deployments = serve.status().applications[APP_NAME].deployments
    assert deployments[MATTING_NAME].status == DeploymentStatus.HEALTHY
    # The model loaded in the matting deployment's replica, not in the ingress.
    loaded_in = [
        log_file.name
        for log_file in cluster.serve_logs.glob("replica_*.log")
        if "loaded the background-matting model" in log_file.read_text(errors="replace")
    ]
    assert loaded_in
    assert all(name.startswith(f"replica_{APP_NAME}_{MATTING_NAME}_") for name in loaded_in)


def test_a_stream_closed_early_stops_the_replicas_work(cluster: Cluster) -> None:
    stopped_before = len(_replica_log_lines(cluster, "gpt-image-1: stopped a batch"))
    stream = cluster.client().images.generate(
        model="gpt-image-1", prompt="never finished", stream=True, partial_images=3, quality="low"
    )
    assert next(iter(stream)).type == "image_generation.partial_image"
    stream.close()
    stopped = _replica_log_line(cluster, "gpt-image-1: stopped a batch", after=stopped_before)
    step = int(stopped.split("after step ")[1].split(" of ")[0])
    assert f"of {SLOW_STEPS}" in stopped and step < SLOW_STEPS * 3 // 4


def test_cancelling_the_ingress_task_cancels_the_replicas_stream(cluster: Cluster) -> None:
    """The ingress's engine driven from here, outside any Serve request, so Ray cancels no call
    on its own: cancelling the task awaiting a streamed generation stops the replica's work."""
    plan = GenerationPlan(
        model="gpt-image-1",
        prompt="cancelled",
        negative_prompt=None,
        n=1,
        size="256x256",
        width=256,
        height=256,
        steps=SLOW_STEPS,
        guidance_scale=0.0,
        revised_prompt=None,
        user_prompt="cancelled",
        quality="low",
        style=None,
    )
    stopped_before = len(_replica_log_lines(cluster, "gpt-image-1: stopped a batch"))

    async def cancel_after_the_first_partial_image() -> None:
        handle = serve.get_deployment_handle(cluster.shared, APP_NAME)
        engine = DeploymentEngine({"gpt-image-1": handle}, {})
        first = asyncio.Event()
        previews = PreviewRequest(3, lambda index, pixels: first.set())
        generating = asyncio.create_task(engine.generate(plan, previews=previews))
        await first.wait()
        await cancel_and_wait(generating)

    asyncio.run(cancel_after_the_first_partial_image())
    stopped = _replica_log_line(cluster, "gpt-image-1: stopped a batch", after=stopped_before)
    step = int(stopped.split("after step ")[1].split(" of ")[0])
    assert step < SLOW_STEPS * 3 // 4


def _replica_log_line(cluster: Cluster, *fragments: str, after: int = 0) -> str:
    """The last line of the replicas' Serve logs with every fragment, once more than `after`
    such lines are written."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        lines = _replica_log_lines(cluster, *fragments)
        if len(lines) > after:
            return lines[-1]
        time.sleep(0.2)
    raise AssertionError(f"no replica log line with {fragments}")


def _replica_log_lines(cluster: Cluster, *fragments: str) -> list[str]:
    return [
        line
        for log_file in sorted(cluster.serve_logs.glob("replica_*.log"))
        for line in log_file.read_text(errors="replace").splitlines()
        if all(fragment in line for fragment in fragments)
    ]


def test_deployments_the_cluster_cannot_hold_are_refused_with_the_numbers(
    cluster: Cluster, tiny_sd: Path, tmp_path: Path
) -> None:
    started = time.monotonic()
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "easel",
            "cluster",
            "serve",
            "--address",
            ray.get_runtime_context().gcs_address,
            "--detach",
            "--data-dir",
            str(tmp_path),
            "--model",
            f"dall-e-2={tiny_sd}",
            "--cpus-per-replica",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - started
    assert refused.returncode == 2, refused.stdout + refused.stderr
    message = " ".join(refused.stderr.split())
    deployment = deployment_name(PipelineKey.of(str(tiny_sd)))
    assert (
        f"CPU: 4.75 asked (ingress 1 x 0.5 + matting 1 x 0.25 + {deployment} 1 x 4), "
        "the cluster has 2"
    ) in message
    assert f"{deployment}: no node can hold one replica (4 CPU)" in message
    assert "Traceback" not in refused.stderr
    assert elapsed < 60, f"refused only after {elapsed:.0f} s"
    # Refused before deploying: the running application is untouched.
    _small_image(cluster.client(), "still serving")


def test_killing_a_replica_mid_run_leaves_every_request_answered(cluster: Cluster) -> None:
    client = cluster.client()
    victim = _small_image(client, "who are you")
    victim_replica, victim_pid = _replica(victim), _pid(victim)

    def one(i: int) -> tuple[int, dict[str, Any], str, float]:
        response = httpx.post(
            cluster.base_url + "/v1/images/generations",
            json={
                "model": "dall-e-2",
                "prompt": f"storm {i}",
                "n": 4,
                "size": "256x256",
                "response_format": "b64_json",
            },
            headers={"Authorization": f"Bearer {cluster.api_key}"},
            timeout=180,
        )
        replica = response.headers.get(REPLICA_HEADER, "")
        return response.status_code, response.json(), replica, time.monotonic()

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(one, i) for i in range(8)]
        time.sleep(0.5)  # both replicas are now generating
        os.kill(victim_pid, signal.SIGKILL)
        killed_at = time.monotonic()
        answers = [future.result(timeout=180) for future in futures]

    assert any(done_at > killed_at for _, _, _, done_at in answers), "the kill came after the run"
    for status, body, replica, done_at in answers:
        assert status in (200, 503), body
        if status == 200:
            assert len(body["data"]) == 4
            # Requests that were on the dead replica were answered by the other one.
            assert victim_replica not in replica or done_at < killed_at + 0.5
        else:
            assert body["error"]["code"] == "replica_unavailable"
            assert "retry" in body["error"]["message"]
    assert any(status == 200 for status, _, _, _ in answers)

    # Ray starts a replacement replica; until it is up the survivor answers alone.
    before = {victim_replica} | {replica.split()[0] for _, _, replica, _ in answers if replica}
    deadline = time.monotonic() + 150
    replacement = None
    while replacement is None and time.monotonic() < deadline:
        with ThreadPoolExecutor(4) as pool:
            raws = list(pool.map(lambda i: _small_image(client, f"after the storm {i}"), range(4)))
        replacement = next((_replica(r) for r in raws if _replica(r) not in before), None)
    assert replacement is not None, "Ray did not replace the killed replica"
