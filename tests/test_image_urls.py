"""`url` results: absolute, proxy-aware, signed, expiring, and never a way to read other files."""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import openai
import pytest

from tests.images import fetch, images_of
from tests.server import RunningServer


def make_url(client: openai.OpenAI) -> str:
    result = client.images.generate(model="dall-e-2", prompt="a kite", size="256x256")
    return images_of(result)[0].url or ""


def test_url_is_absolute_signed_and_valid_for_an_hour(
    client: openai.OpenAI, server: RunningServer
) -> None:
    url = make_url(client)
    parts = urlsplit(url)
    assert url.startswith(server.base_url + "/files/images/")
    query = parse_qs(parts.query)
    expires = int(query["expires"][0])
    assert 3590 <= expires - time.time() <= 3610
    assert len(query["signature"][0]) == 64
    assert fetch(url).size == (256, 256)


def test_url_honours_forwarded_headers(server: RunningServer, api_key: str) -> None:
    response = httpx.post(
        server.base_url + "/v1/images/generations",
        json={"prompt": "a kite", "size": "256x256"},
        headers={
            "Authorization": f"Bearer {api_key}",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "images.example.test, proxy.internal",
        },
        timeout=300,
    )
    url = response.json()["data"][0]["url"]
    assert url.startswith("https://images.example.test/files/images/")
    # The path and signature work against the server itself.
    local = server.base_url + urlsplit(url).path + "?" + urlsplit(url).query
    assert fetch(local).size == (256, 256)


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return f"{parts.scheme}://{parts.netloc}{parts.path}?" + "&".join(
        f"{k}={v}" for k, v in query.items()
    )


def test_tampered_urls_are_403(client: openai.OpenAI) -> None:
    url = make_url(client)
    signature = parse_qs(urlsplit(url).query)["signature"][0]
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    for bad in (
        _with_query(url, signature=flipped),
        _with_query(url, expires=str(int(time.time()) + 10 * 3600)),
        url.split("?")[0],
    ):
        response = httpx.get(bad)
        assert response.status_code == 403, bad
        assert response.json()["error"]["code"] == "invalid_signature"


def test_another_images_signature_does_not_open_it(client: openai.OpenAI) -> None:
    first, second = make_url(client), make_url(client)
    stolen = urlsplit(second).path + "?" + urlsplit(first).query
    base = first.split("/files/")[0]
    assert httpx.get(base + stolen).status_code == 403


def test_expired_url_is_410(client: openai.OpenAI, server: RunningServer) -> None:
    url = make_url(client)
    image_id = urlsplit(url).path.rsplit("/", 1)[1].removesuffix(".png")
    # Sign with the server's own key (kept in the data directory) for a moment already past.
    secret = (server.data_dir / "url-signing.key").read_text().strip().encode()
    expires = int(time.time()) - 5
    signature = hmac.new(secret, f"{image_id}.{expires}".encode(), hashlib.sha256).hexdigest()
    response = httpx.get(_with_query(url, expires=str(expires), signature=signature))
    assert response.status_code == 410
    assert response.json()["error"]["code"] == "url_expired"


@pytest.mark.parametrize(
    "path",
    [
        "/files/images/..%2F..%2Feasel.db",
        "/files/images/%2e%2e%2furl-signing.key",
        "/files/images/../easel.db",
        "/files/images/url-signing.key",
        "/files/images/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.png",
        "/files/images/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.db",
    ],
)
def test_path_traversal_never_reveals_files(server: RunningServer, path: str) -> None:
    with httpx.Client() as http:
        request = http.build_request(
            "GET", server.base_url + path + "?expires=9999999999&signature=00"
        )
        # Send the path exactly as written, without client-side normalisation.
        request.url = request.url.copy_with(
            raw_path=(path + "?expires=9999999999&signature=00").encode()
        )
        response = http.send(request)
    assert response.status_code in (403, 404)
    assert b"SQLite" not in response.content
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    "expires",
    [
        "²",  # a digit to str.isdigit, not to int()
        "9" * 5000,  # more digits than int() converts
        "-5",
        "1e12",
        "",
    ],
)
def test_malformed_expiry_is_403_in_the_envelope(client: openai.OpenAI, expires: str) -> None:
    response = httpx.get(_with_query(make_url(client), expires=expires))
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_signature"
