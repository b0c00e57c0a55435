"""Bodies a fuzzer sends: strings that are not Unicode, deep nesting, other encodings. Each gets a
400 in OpenAI's envelope, and the access log line says why."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.logs import log_lines
from tests.server import RunningServer

ENVELOPE_KEYS = {"message", "type", "param", "code"}


def post_raw(server: RunningServer, api_key: str, content: bytes) -> httpx.Response:
    return httpx.post(
        server.base_url + "/v1/images/generations",
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
        content=content,
        timeout=60,
    )


def error_of(response: httpx.Response) -> dict[str, str | None]:
    assert response.status_code == 400, response.text
    error: dict[str, str | None] = response.json()["error"]
    assert set(error) == ENVELOPE_KEYS and error["message"]
    assert error["type"] == "invalid_request_error"
    return error


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ('{"prompt": "\\ud800"}', "prompt"),
        ('{"prompt": "a cat \\udfff and a dog"}', "prompt"),
        ('{"prompt": "a cat", "user": "\\ud83d"}', "user"),
        ('{"prompt": "a cat", "safety_identifier": "\\ud83d"}', "safety_identifier"),
        ('{"prompt": "a cat", "model": "dall-e-\\ud800"}', "model"),
        ('{"prompt": "a cat", "size": "\\udc00"}', "size"),
        ('{"prompt": "a cat", "extra": {"deep": ["ok", "\\ud800"]}}', "extra.deep[1]"),
    ],
)
def test_strings_that_are_not_unicode_are_refused_naming_the_field(
    server: RunningServer, api_key: str, body: str, param: str
) -> None:
    error = error_of(post_raw(server, api_key, body.encode()))
    assert error["param"] == param
    assert "not valid Unicode" in (error["message"] or "")


def test_a_surrogate_pair_is_a_character(server: RunningServer, api_key: str) -> None:
    body = '{"prompt": "a cat \\ud83d\\ude00", "size": "256x256", "response_format": "b64_json"}'
    assert post_raw(server, api_key, body.encode()).status_code == 200


@pytest.mark.parametrize("depth", [40, 970, 100_000])
def test_deep_nesting_is_refused(server: RunningServer, api_key: str, depth: int) -> None:
    body = '{"prompt": "a cat", "x": ' + "[" * depth + "]" * depth + "}"
    error = error_of(post_raw(server, api_key, body.encode()))
    assert "deeper than" in (error["message"] or "")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32", "latin-1"])
def test_bodies_that_are_not_utf_8_are_refused(
    server: RunningServer, api_key: str, encoding: str
) -> None:
    body = json.dumps({"prompt": "un café", "size": "256x256"}, ensure_ascii=False)
    error = error_of(post_raw(server, api_key, body.encode(encoding)))
    assert "UTF-8" in (error["message"] or "")


def test_the_access_line_of_a_refusal_says_why(server: RunningServer, api_key: str) -> None:
    body = {"prompt": "a secret prompt", "model": "dall-e-2", "size": "999x999"}
    response = post_raw(server, api_key, json.dumps(body).encode())
    assert response.status_code == 400
    (line,) = [
        line
        for line in log_lines(server, response.headers["x-request-id"], 1)
        if line["logger"] == "easel.access"
    ]
    assert line["status"] == 400
    assert line["error_type"] == "invalid_request_error"
    assert line["error_code"] == "invalid_value"
    assert line["error_param"] == "size"
    assert "invalid_value" in str(line["message"]) and "param=size" in str(line["message"])
    assert "secret prompt" not in json.dumps(line) and api_key not in json.dumps(line)
