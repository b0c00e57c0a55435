"""Per-key limits through the HTTP API and the openai SDK: status, headers, envelope, SDK retries,
model permissions, disabled and expired keys, and usage totals that match what was delivered."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from tests.images import images_of
from tests.limits_http import ADMIN_KEY, admin, generate, new_key, usage
from tests.server import RunningServer, easel, start_server

ENVELOPE_KEYS = {"message", "type", "param", "code"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_sd: Path) -> Iterator[RunningServer]:
    """dall-e-2 on a tiny pipeline, and `broken`, whose pipeline does not exist: its requests fail
    inside the engine, a real failure rather than an injected one."""
    data_dir = tmp_path_factory.mktemp("limits")
    running = start_server(
        data_dir,
        "--model",
        f"dall-e-2={tiny_sd}",
        "--model",
        f"broken={data_dir / 'no-such-pipeline'}",
        env={"EASEL_ADMIN_KEY": ADMIN_KEY},
    )
    yield running
    running.stop()


def sdk(server: RunningServer, secret: str, statuses: list[int], retries: int) -> openai.OpenAI:
    """An SDK client that records the status of every HTTP attempt it makes."""
    http_client = openai.DefaultHttpxClient(
        event_hooks={"response": [lambda response: statuses.append(response.status_code)]}
    )
    return openai.OpenAI(
        api_key=secret,
        base_url=server.base_url + "/v1",
        max_retries=retries,
        timeout=300,
        http_client=http_client,
    )


def error_of(response: httpx.Response, status: int) -> dict[str, str | None]:
    assert response.status_code == status, response.text
    error: dict[str, str | None] = response.json()["error"]
    assert set(error) == ENVELOPE_KEYS and error["message"]
    return error


def test_requests_per_minute(server: RunningServer) -> None:
    _, secret = new_key(server, rpm=2)
    ok = generate(server, secret)
    assert ok.status_code == 200
    assert ok.headers["x-ratelimit-limit-requests"] == "2"
    assert ok.headers["x-ratelimit-remaining-requests"] == "1"
    assert ok.headers["x-ratelimit-reset-requests"].endswith("s")
    # Every response to a limited key carries the headers, a client mistake included.
    invalid = generate(server, secret, n=0)
    error_of(invalid, 400)
    assert invalid.headers["x-ratelimit-remaining-requests"] == "0"
    refused = generate(server, secret)
    error = error_of(refused, 429)
    assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
    assert 1 <= int(refused.headers["Retry-After"]) <= 30
    assert int(refused.headers["retry-after-ms"]) > 0
    assert refused.headers["x-ratelimit-limit-requests"] == "2"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert "x-should-retry" not in refused.headers


def test_images_per_minute(server: RunningServer) -> None:
    _, secret = new_key(server, ipm=3)
    ok = generate(server, secret, n=2)
    assert ok.status_code == 200 and len(ok.json()["data"]) == 2
    assert ok.headers["x-ratelimit-limit-images"] == "3"
    assert ok.headers["x-ratelimit-remaining-images"] == "1"
    refused = generate(server, secret, n=2)
    assert error_of(refused, 429)["code"] == "rate_limit_exceeded"
    assert "Retry-After" in refused.headers
    never = generate(server, secret, n=4)  # more than a whole minute's worth: retrying cannot help
    assert error_of(never, 429)["code"] == "rate_limit_exceeded"
    assert never.headers["x-should-retry"] == "false"


def test_per_user_limits_within_a_key(server: RunningServer) -> None:
    _, secret = new_key(server, user_rpm=1)
    assert generate(server, secret, user="alice").status_code == 200
    assert error_of(generate(server, secret, user="alice"), 429)["code"] == "rate_limit_exceeded"
    assert generate(server, secret, user="bob").status_code == 200


@pytest.mark.slow
def test_quota_and_the_sdk_stops_at_once(server: RunningServer) -> None:
    key_id, secret = new_key(server, quota=3, quota_period="total")
    assert generate(server, secret, n=2).status_code == 200
    assert generate(server, secret, n=1).status_code == 200
    refused = generate(server, secret, n=1)
    error = error_of(refused, 429)
    assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_quota")
    assert refused.headers["x-should-retry"] == "false"
    statuses: list[int] = []
    with pytest.raises(openai.RateLimitError) as raised:
        sdk(server, secret, statuses, retries=3).images.generate(
            model="dall-e-2", prompt="one more", size="256x256", response_format="b64_json"
        )
    assert raised.value.code == "insufficient_quota"
    assert statuses == [429]  # no retry of what cannot succeed
    assert usage(server, key_id=key_id)["totals"]["images_delivered"] == 3


@pytest.mark.slow
def test_the_sdk_waits_and_retries_on_a_rate_limit(server: RunningServer) -> None:
    # rpm 30 frees one request every 2 s: the 429's Retry-After is short, and the SDK honours it.
    _, secret = new_key(server, rpm=30)
    for _attempt in range(3):
        with httpx.Client(headers={"Authorization": f"Bearer {secret}"}) as client:
            for _ in range(60):  # cheap invalid requests use up the minute's requests
                response = client.post(server.base_url + "/v1/images/generations", json={})
                if response.status_code == 429:
                    break
        statuses: list[int] = []
        result = sdk(server, secret, statuses, retries=3).images.generate(
            model="dall-e-2", prompt="after a wait", size="256x256", response_format="b64_json"
        )
        if statuses[0] == 429:  # else the machine stalled past the refill: start over
            break
    assert statuses[0] == 429 and statuses[-1] == 200
    assert len(images_of(result)) == 1 and images_of(result)[0].b64_json


def test_models_a_key_may_use(server: RunningServer) -> None:
    _, secret = new_key(server, models=["broken"])
    error = error_of(generate(server, secret, model="dall-e-2"), 403)
    assert (error["code"], error["param"]) == ("model_not_allowed", "model")
    client = openai.OpenAI(api_key=secret, base_url=server.base_url + "/v1", max_retries=0)
    assert [m.id for m in client.models.list()] == ["broken"]
    with pytest.raises(openai.PermissionDeniedError):
        client.models.retrieve("dall-e-2")


@pytest.mark.slow
def test_disabled_and_expired_keys_through_the_cli(server: RunningServer) -> None:
    data_dir = server.data_dir
    created = easel(
        "keys",
        "create",
        "--name",
        "cli",
        "--disable",
        "--rpm",
        "5",
        "--models",
        "dall-e-2",
        "--quota",
        "10",
        "--quota-period",
        "day",
        data_dir=data_dir,
    )
    secret = created.stdout.strip().splitlines()[-1]
    key_id = next(
        k["id"] for k in admin(server, "GET", "/admin/keys").json()["data"] if k["name"] == "cli"
    )
    assert error_of(generate(server, secret), 401)["code"] == "key_disabled"
    easel("keys", "update", key_id, "--enable", "--expires", "2000-01-01", data_dir=data_dir)
    assert error_of(generate(server, secret), 401)["code"] == "key_expired"
    easel("keys", "update", key_id, "--expires", "never", "--rpm", "0", data_dir=data_dir)
    ok = generate(server, secret)
    assert ok.status_code == 200 and "x-ratelimit-limit-requests" not in ok.headers
    listed = easel("keys", "list", data_dir=data_dir).stdout
    assert key_id in listed and "quota 10/day" in listed and secret not in listed
    bad = easel("keys", "update", key_id, "--quota-period", "week", data_dir=data_dir, check=False)
    assert bad.returncode == 2 and "quota-period" in bad.stderr


@pytest.mark.slow
def test_usage_matches_what_was_delivered_with_failures_and_concurrency(
    server: RunningServer,
) -> None:
    key_id, secret = new_key(server, quota=12)
    # A request for the model that cannot load fails inside the engine: nothing is delivered,
    # and its reserved images go back to the quota.
    failed = generate(server, secret, model="broken", n=4)
    assert error_of(failed, 503)["code"] == "model_unavailable"
    sizes = [1, 2, 3, 1, 2, 3, 1, 2, 3]  # 18 images asked for, 12 allowed
    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda n: generate(server, secret, n=n, user="u1"), sizes))
    delivered = sum(len(r.json()["data"]) for r in responses if r.status_code == 200)
    refused = [r for r in responses if r.status_code != 200]
    assert all(r.json()["error"]["code"] == "insufficient_quota" for r in refused)
    assert 10 <= delivered <= 12  # never over; under only by a request that did not fit the rest
    report = usage(server, key_id=key_id)
    totals = report["totals"]
    assert totals["images_delivered"] == delivered
    assert totals["requests"] == 1 + (len(sizes) - len(refused))  # refused requests are not usage
    assert totals["failed_requests"] == 1
    assert {(row["model"], row["key_id"]) for row in report["data"]} == {
        ("broken", key_id),
        ("dall-e-2", key_id),
    }
    assert usage(server, key_id=key_id, user="u1")["totals"]["images_delivered"] == delivered
    # The CLI reads the same totals from the database.
    csv_lines = easel(
        "usage", "--key", key_id, "--csv", "-", data_dir=server.data_dir
    ).stdout.splitlines()
    assert csv_lines[0].startswith("key_id,model,day,requests,failed_requests")
    assert sum(int(line.split(",")[6]) for line in csv_lines[1:]) == delivered
    table = easel("usage", "--key", key_id, "--model", "dall-e-2", data_dir=server.data_dir).stdout
    assert key_id in table and "total" in table


def test_admin_api_guards_and_never_shows_a_secret_twice(server: RunningServer) -> None:
    key_id, secret = new_key(server, rpm=5)
    path = f"/admin/keys/{key_id}"
    assert error_of(httpx.get(server.base_url + path), 401)["code"] is None
    wrong = httpx.get(server.base_url + path, headers={"Authorization": f"Bearer {secret}"})
    assert error_of(wrong, 401)["code"] == "invalid_admin_key"
    shown = admin(server, "GET", path).json()
    assert (
        shown["rpm"] == 5
        and "secret" not in shown
        and secret not in admin(server, "GET", "/admin/keys").text
    )
    changed = admin(
        server, "PATCH", path, json={"rpm": None, "ipm": 7, "models": ["dall-e-2"]}
    ).json()
    assert (changed["rpm"], changed["ipm"], changed["models"]) == (None, 7, ["dall-e-2"])
    assert (
        error_of(admin(server, "PATCH", path, json={"quota_period": "week"}), 400)["param"]
        == "quota_period"
    )
    assert error_of(admin(server, "PATCH", path, json={"rpm": "5"}), 400)["param"] == "rpm"
    assert (
        error_of(admin(server, "PATCH", path, json={"models": ["nope"]}), 404)["code"]
        == "model_not_found"
    )
    assert error_of(admin(server, "GET", "/admin/keys/key_missing"), 404)["code"] == "key_not_found"
    assert (
        error_of(admin(server, "GET", "/admin/usage", params={"since": "yesterday"}), 400)["param"]
        == "since"
    )
    assert admin(server, "DELETE", path).json()["status"] == "revoked"
    assert error_of(generate(server, secret), 401)["code"] == "invalid_api_key"


def test_readyz_is_503_while_a_model_is_not_loaded(server: RunningServer) -> None:
    response = httpx.get(server.base_url + "/readyz", timeout=30)
    assert response.status_code == 503 and response.headers["Retry-After"]
    body = response.json()
    assert body["status"] == "not_ready" and body["database"] == "ok"
    assert body["models"]["broken"] in ("loading", "failed")
