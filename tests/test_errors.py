"""Every client mistake gets OpenAI's envelope, its status code and the offending `param`.

HTTP-level cases run against the app in process (tests/inprocess.py); those that need the CLI or a
generation run against `easel serve`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest

from tests.images import images_of
from tests.inprocess import InProcessApp
from tests.sdk_errors import error_body
from tests.server import RunningServer, create_key, easel

ENVELOPE_KEYS = {"message", "type", "param", "code"}


def post(server: RunningServer, api_key: str | None, **kwargs: Any) -> httpx.Response:
    headers = kwargs.pop("headers", {})
    if api_key is not None:
        headers["Authorization"] = f"Bearer {api_key}"
    return httpx.post(
        server.base_url + "/v1/images/generations", headers=headers, timeout=300, **kwargs
    )


def assert_envelope(
    response: httpx.Response, status: int, param: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == ENVELOPE_KEYS
    assert error["message"]
    assert error["param"] == param
    assert "x-request-id" in response.headers
    return error


@pytest.mark.parametrize(
    ("kwargs", "param", "code", "message"),
    [
        (
            {"model": "dall-e-2", "n": 11},
            "n",
            "integer_above_max_value",
            "11 is greater than the maximum of 10 - 'n'",
        ),
        (
            {"model": "dall-e-2", "n": 0},
            "n",
            "integer_below_min_value",
            "0 is less than the minimum of 1 - 'n'",
        ),
        ({"model": "dall-e-3", "n": 2}, "n", None, "You must provide n=1 for this model."),
        (
            {"model": "dall-e-3", "size": "512x512"},
            "size",
            "invalid_value",
            "Invalid value: '512x512'. "
            "Supported values are: '1024x1024', '1792x1024', and '1024x1792'.",
        ),
        ({"model": "dall-e-2", "size": "1792x1024"}, "size", "invalid_value", None),
        ({"model": "dall-e-2", "size": "huge"}, "size", "invalid_value", None),
        ({"model": "dall-e-2", "quality": "hd"}, "quality", "invalid_value", None),
        ({"model": "dall-e-3", "quality": "ultra"}, "quality", "invalid_value", None),
        (
            {"model": "dall-e-2", "style": "vivid"},
            "style",
            "unknown_parameter",
            "Unknown parameter: 'style'.",
        ),
        ({"model": "dall-e-3", "style": "baroque"}, "style", "invalid_value", None),
        (
            {"model": "dall-e-3", "response_format": "jpeg"},
            "response_format",
            "invalid_value",
            None,
        ),
        (
            {"model": "dall-e-2", "prompt": "x" * 1001},
            "prompt",
            "string_above_max_length",
            "Prompt must be length 1000 or less. Your prompt length is 1001. "
            "Please reduce your prompt length.",
        ),
        ({"model": "dall-e-3", "prompt": "x" * 4001}, "prompt", "string_above_max_length", None),
        ({"model": "dall-e-2", "prompt": ""}, "prompt", "empty_string", None),
        ({"model": "dall-e-2", "prompt": "   "}, "prompt", "empty_string", None),
    ],
)
@pytest.mark.anyio
async def test_invalid_fields_through_the_sdk(
    sdk: openai.AsyncOpenAI,
    kwargs: dict[str, Any],
    param: str,
    code: str | None,
    message: str | None,
) -> None:
    kwargs.setdefault("prompt", "a cat")
    with pytest.raises(openai.BadRequestError) as excinfo:
        await sdk.images.generate(**kwargs)
    error = excinfo.value
    assert error.status_code == 400
    assert error.type == "invalid_request_error"
    assert error.param == param
    if code is not None:
        assert error.code == code
    if message is not None:
        assert error_body(error)["message"] == message
    assert error.request_id


@pytest.mark.anyio
async def test_dall_e_3_n_above_one_has_openai_wording(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as excinfo:
        await sdk.images.generate(model="dall-e-3", prompt="a cat", n=10)
    assert error_body(excinfo.value)["message"] == "You must provide n=1 for this model."


@pytest.mark.anyio
async def test_unknown_model_is_404(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as excinfo:
        await sdk.images.generate(model="dall-e-9", prompt="a cat")
    assert excinfo.value.code == "model_not_found"
    assert excinfo.value.param == "model"
    assert "`dall-e-9`" in error_body(excinfo.value)["message"]


@pytest.mark.anyio
async def test_missing_key_is_401(app: InProcessApp) -> None:
    error = assert_envelope(await app.post_generation(None, json={"prompt": "a cat"}), 401)
    assert error["type"] == "invalid_request_error"
    assert "You didn't provide an API key" in error["message"]
    error = assert_envelope(
        await app.post_generation(
            None, json={"prompt": "a cat"}, headers={"Authorization": "Basic abc"}
        ),
        401,
    )


@pytest.mark.anyio
async def test_wrong_key_is_401_and_masked(app: InProcessApp) -> None:
    wrong = "sk-thisIsNotARealKeyAtAll0123456789wxyz"
    with pytest.raises(openai.AuthenticationError) as excinfo:
        await app.sdk(wrong).images.generate(prompt="a cat")
    assert excinfo.value.code == "invalid_api_key"
    message = error_body(excinfo.value)["message"]
    assert wrong not in message
    assert message.startswith("Incorrect API key provided: sk-th")
    assert "wxyz" in message and "*" in message


@pytest.mark.slow
def test_revoked_key_is_refused(server: RunningServer) -> None:
    secret = create_key(server.data_dir, "to-revoke")
    listed = easel("keys", "list", data_dir=server.data_dir).stdout
    assert secret not in listed
    key_id = next(line.split()[1] for line in listed.splitlines() if "to-revoke" in line)
    sdk = openai.OpenAI(api_key=secret, base_url=server.base_url + "/v1", max_retries=0)
    assert sdk.models.list().data
    assert "Revoked" in easel("keys", "revoke", key_id, data_dir=server.data_dir).stdout
    with pytest.raises(openai.AuthenticationError):
        sdk.models.list()
    missing = easel("keys", "revoke", "key_doesnotexist", data_dir=server.data_dir, check=False)
    assert missing.returncode == 1


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "a cat", "n": "2"}, "n"),
        ({"prompt": "a cat", "n": True}, "n"),
        ({"prompt": "a cat", "n": 1.5}, "n"),
        ({"prompt": 5}, "prompt"),
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"prompt": "a cat", "size": 1024}, "size"),
        ({"prompt": "a cat", "model": {"id": "dall-e-2"}}, "model"),
        ({"prompt": "a cat", "user": 7}, "user"),
    ],
)
@pytest.mark.anyio
async def test_wrong_json_types(app: InProcessApp, body: dict[str, Any], param: str) -> None:
    error = assert_envelope(await app.post_generation(app.api_key, json=body), 400, param)
    assert error["code"] == "invalid_type"
    assert f"Invalid type for '{param}'" in error["message"]


@pytest.mark.anyio
async def test_missing_prompt(app: InProcessApp) -> None:
    response = await app.post_generation(app.api_key, json={"model": "dall-e-2"})
    error = assert_envelope(response, 400, "prompt")
    assert error["message"] == "Missing required parameter: 'prompt'."


@pytest.mark.anyio
async def test_unknown_field(app: InProcessApp) -> None:
    response = await app.post_generation(app.api_key, json={"prompt": "a cat", "colour": "red"})
    error = assert_envelope(response, 400, "colour")
    assert error["code"] == "unknown_parameter"


@pytest.mark.parametrize(
    "content", [b"{not json", b"", b"[1, 2]", b'"a string"', b"null", b"\xff\xfe\x00"]
)
@pytest.mark.anyio
async def test_malformed_bodies(app: InProcessApp, content: bytes) -> None:
    response = await app.post_generation(
        app.api_key, content=content, headers={"Content-Type": "application/json"}
    )
    error = assert_envelope(response, 400)
    assert error["type"] == "invalid_request_error"


@pytest.mark.anyio
async def test_oversize_body_is_413(app: InProcessApp) -> None:
    big = b'{"prompt": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    error = assert_envelope(await app.post_generation(app.api_key, content=big), 413)
    assert error["code"] == "request_too_large"


@pytest.mark.anyio
async def test_oversize_chunked_body_is_413(app: InProcessApp) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"prompt": "'
        for _ in range(64):
            yield b"x" * 65536
        yield b'"}'

    # No Content-Length: the server must count while reading and stop at the limit.
    error = assert_envelope(await app.post_generation(app.api_key, content=chunks()), 413)
    assert error["code"] == "request_too_large"


@pytest.mark.anyio
async def test_unknown_route_is_enveloped(app: InProcessApp) -> None:
    response = await app.http.get(
        "/v1/nothing-here", headers={"Authorization": f"Bearer {app.api_key}"}
    )
    error = assert_envelope(response, 404)
    assert error["message"] == "Invalid URL (GET /v1/nothing-here)"
    assert_envelope(await app.http.get("/v1/images/generations"), 405)


def test_server_keeps_serving_after_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        client.images.generate(model="dall-e-2", prompt="a cat", n=99)
    result = client.images.generate(
        model="dall-e-2", prompt="a cat", size="256x256", response_format="b64_json"
    )
    assert len(images_of(result)) == 1
