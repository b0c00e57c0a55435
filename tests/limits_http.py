"""Helpers for driving keys, limits and usage through a running server's HTTP API."""

from __future__ import annotations

import secrets
from typing import Any

import httpx

from tests.server import RunningServer

ADMIN_KEY = "adm-" + secrets.token_urlsafe(32)


def admin(server: RunningServer, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(
        method,
        server.base_url + path,
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=60,
        **kwargs,
    )


def new_key(server: RunningServer, **policy: Any) -> tuple[str, str]:
    """A key made through the admin API; (id, secret)."""
    response = admin(server, "POST", "/admin/keys", json={"name": "test", **policy})
    assert response.status_code == 201, response.text
    return response.json()["id"], response.json()["secret"]


def generate(server: RunningServer, secret: str, **body: Any) -> httpx.Response:
    body.setdefault("prompt", "a small red square")
    body.setdefault("size", "256x256")
    body.setdefault("response_format", "b64_json")
    return httpx.post(
        server.base_url + "/v1/images/generations",
        headers={"Authorization": f"Bearer {secret}"},
        json=body,
        timeout=300,
    )


def usage(server: RunningServer, **filters: str) -> dict[str, Any]:
    response = admin(server, "GET", "/admin/usage", params=filters)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body
