"""What current OpenAI clients send: every field of OpenAI's CreateImageRequest is accepted at
the value that changes nothing, and refused, naming it, at a value Easel cannot honour."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.images import decode_b64
from tests.limits_http import ADMIN_KEY, generate, new_key, usage
from tests.sdk_errors import error_body
from tests.server import RunningServer, start_server

# The no-op value of each field OpenAI defines for GPT image models, as wrappers forward them.
NO_OP_FIELDS: dict[str, Any] = {
    "partial_images": 0,
    "output_format": "png",
    "output_compression": 100,
    "background": "auto",
    "moderation": "auto",
}


@pytest.mark.parametrize("values", ["defaults", "nulls"])
def test_every_field_at_its_no_op_value_is_accepted(client: openai.OpenAI, values: str) -> None:
    fields = NO_OP_FIELDS if values == "defaults" else dict.fromkeys(NO_OP_FIELDS)
    result = client.images.generate(
        model="dall-e-2",
        prompt="a lighthouse",
        size="256x256",
        response_format="b64_json",
        stream=False,
        user="user-1234",
        safety_identifier="user-1234",
        **fields,
    )
    assert decode_b64(result.data[0].b64_json or "").size == (256, 256)


def test_nulls_from_wrappers_that_forward_every_field(client: openai.OpenAI) -> None:
    result = client.images.generate(
        model="dall-e-3",
        prompt="a lighthouse",
        response_format="b64_json",
        extra_body={"stream": None, "background": "opaque", "safety_identifier": None},
    )
    assert result.data is not None and len(result.data) == 1


@pytest.mark.parametrize(
    ("field", "value", "shown", "supported"),
    [
        ("stream", True, "true", "false"),
        ("partial_images", 2, "2", "0"),
        ("output_format", "jpeg", "'jpeg'", "'png'"),
        ("output_compression", 80, "80", "100"),
        ("background", "transparent", "'transparent'", "'auto', 'opaque'"),
        ("moderation", "low", "'low'", "'auto'"),
    ],
)
@pytest.mark.parametrize("model", ["dall-e-2", "dall-e-3"])
def test_values_easel_cannot_honour_are_refused_naming_the_field(
    client: openai.OpenAI, model: str, field: str, value: object, shown: str, supported: str
) -> None:
    with pytest.raises(openai.BadRequestError) as excinfo:
        client.images.generate(model=model, prompt="a cat", extra_body={field: value})
    error = excinfo.value
    assert error.param == field
    assert error.code == "unsupported_value"
    assert error_body(error)["message"] == (
        f"Unsupported value: '{field}' does not support {shown} with this model. "
        f"Supported values are: {supported}."
    )


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("stream", "false", "a boolean"),
        ("partial_images", False, "an integer"),
        ("output_compression", "100", "an integer"),
        ("output_format", 1, "a string"),
        ("safety_identifier", 7, "a string"),
    ],
)
def test_wrong_types_are_refused(
    client: openai.OpenAI, field: str, value: object, expected: str
) -> None:
    with pytest.raises(openai.BadRequestError) as excinfo:
        client.images.generate(model="dall-e-2", prompt="a cat", extra_body={field: value})
    assert excinfo.value.code == "invalid_type"
    assert excinfo.value.param == field
    assert f"expected {expected}" in error_body(excinfo.value)["message"]


@pytest.fixture(scope="module")
def admin_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_sd: Path
) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("fields"),
        "--model",
        f"dall-e-2={tiny_sd}",
        env={"EASEL_ADMIN_KEY": ADMIN_KEY},
    )
    yield running
    running.stop()


def test_safety_identifier_is_the_end_user_and_wins_over_user(admin_server: RunningServer) -> None:
    key_id, secret = new_key(admin_server, user_rpm=1)
    assert generate(admin_server, secret, safety_identifier="alice").status_code == 200
    # The same end user, named by the older field: over alice's requests per minute.
    refused = generate(admin_server, secret, user="alice")
    assert refused.status_code == 429, refused.text
    assert generate(admin_server, secret, user="alice", safety_identifier="bob").status_code == 200
    for user in ("alice", "bob"):
        totals = usage(admin_server, key_id=key_id, user=user)["totals"]
        assert totals["images_delivered"] == 1
