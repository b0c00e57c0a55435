"""Images in S3-compatible object storage (a local moto server): `easel serve --storage s3://...`,
presigned URLs that expire with the URL lifetime, and the sweep."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import openai
import pytest

from easel.storage.images import new_image_id
from easel.storage.s3_images import S3ImageStore
from tests.images import fetch, images_of
from tests.s3 import BUCKET, S3Server
from tests.server import RunningServer, sdk_client, start_server

TTL = 600


@pytest.fixture(scope="module")
def s3_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_sd: Path, s3: S3Server
) -> Iterator[RunningServer]:
    data_dir = tmp_path_factory.mktemp("s3-data")
    running = start_server(
        data_dir,
        "--model",
        f"dall-e-2={tiny_sd}",
        "--storage",
        f"s3://{BUCKET}/single",
        "--url-ttl",
        str(TTL),
        env=s3.env,
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def s3_client(s3_server: RunningServer) -> openai.OpenAI:
    return sdk_client(s3_server)


def test_url_is_a_presigned_object_url_that_fetches_the_png(
    s3_client: openai.OpenAI, s3: S3Server
) -> None:
    result = s3_client.images.generate(model="dall-e-2", prompt="a harbour", size="512x512")
    url = images_of(result)[0].url
    assert url is not None
    parts = urlsplit(url)
    assert url.startswith(f"{s3.endpoint}/{BUCKET}/single/")
    query = parse_qs(parts.query)
    # Signed for exactly the URL lifetime, from now: it expires like a local URL.
    assert query["X-Amz-Expires"] == [str(TTL)]
    signed_at = time.mktime(time.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ")) - time.timezone
    assert abs(signed_at - time.time()) < 120
    assert "X-Amz-Signature" in query
    image = fetch(url)
    assert image.size == (512, 512)
    assert image.text["model"] == "dall-e-2"
    # The object itself is a PNG with the right type, under the prefix.
    key = parts.path.removeprefix(f"/{BUCKET}/")
    head = s3.client().head_object(Bucket=BUCKET, Key=key)
    assert head["ContentType"] == "image/png"


def test_local_file_route_does_not_serve_s3_images(
    s3_client: openai.OpenAI, s3_server: RunningServer
) -> None:
    result = s3_client.images.generate(model="dall-e-2", prompt="a pier", size="256x256")
    url = images_of(result)[0].url
    image_id = urlsplit(url or "").path.rsplit("/", 1)[1]
    response = httpx.get(
        f"{s3_server.base_url}/files/images/{image_id}?expires=9999999999&signature=0"
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "image_not_found"


def test_sweep_deletes_expired_images_and_leaves_other_objects(
    s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    store = S3ImageStore.connect(f"s3://{BUCKET}/sweep", ttl_seconds=60)
    kept_id = store.save(b"\x89PNG fresh")
    old_id = store.save(b"\x89PNG old")
    client = s3.client()
    # Objects the sweep must not touch: another file type, a nested key, another prefix.
    foreign = [
        "sweep/notes.txt",
        f"sweep/nested/{new_image_id()}.png",
        f"elsewhere/{new_image_id()}.png",
    ]
    for key in foreign:
        client.put_object(Bucket=BUCKET, Key=key, Body=b"keep")
    old_url = store.url(old_id, "unused")
    assert httpx.get(old_url).status_code == 200

    # Nothing is older than the lifetime yet.
    assert store.sweep() == 0
    # Two minutes on, every image under the prefix is past its 60-second lifetime.
    assert store.sweep(now=time.time() + 120) == 2
    assert httpx.get(old_url).status_code == 404
    assert httpx.get(store.url(kept_id, "unused")).status_code == 404
    remaining = {o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert set(foreign) <= remaining
    store.close()


def test_presigned_lifetime_is_limited_to_a_week(
    s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match="7 days"):
        S3ImageStore.connect(f"s3://{BUCKET}/x", ttl_seconds=8 * 24 * 3600)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ("s3://no-such-bucket/images", "cannot use s3://no-such-bucket/images"),
        ("s3://", "expected s3://BUCKET"),
    ],
)
def test_unusable_bucket_is_refused_at_start(
    tmp_path: Path, s3: S3Server, storage: str, message: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "easel", "serve", "--data-dir", str(tmp_path), "--storage", storage],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **s3.env},
    )
    assert result.returncode == 2
    assert message in " ".join(result.stderr.split())
