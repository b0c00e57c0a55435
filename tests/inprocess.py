"""Easel's application in the test process, reached through an ASGI transport: no subprocess, no
socket. For HTTP-level cases (error envelopes, auth, validation, body limits, models listing);
generation end to end stays with the `easel serve` subprocess of tests/server.py."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import httpx2
import openai
from fastapi import FastAPI

from easel.api.app import create_app
from easel.catalog import Catalog
from easel.settings import Settings

# Any host does: the transport hands requests to the app without resolving it.
BASE_URL = "http://easel.test"


@dataclass
class InProcessApp:
    app: FastAPI
    # Raw HTTP through httpx; the openai SDK through httpx2, the fork of httpx it is typed against.
    http: httpx.AsyncClient
    sdk_http: httpx2.AsyncClient
    api_key: str

    def sdk(self, api_key: str | None = None) -> openai.AsyncOpenAI:
        """The official SDK, with `api_key` or the app's key. No retries: every answer is the
        app's first."""
        return openai.AsyncOpenAI(
            api_key=api_key or self.api_key,
            base_url=BASE_URL + "/v1",
            http_client=self.sdk_http,
            max_retries=0,
        )

    async def post_generation(self, api_key: str | None, **kwargs: Any) -> httpx.Response:
        """POST /v1/images/generations as raw HTTP, with `api_key` as the bearer token if given."""
        headers = kwargs.pop("headers", {})
        if api_key is not None:
            headers["Authorization"] = f"Bearer {api_key}"
        return await self.http.post("/v1/images/generations", headers=headers, **kwargs)


@contextlib.asynccontextmanager
async def running_app(settings: Settings, catalog: Catalog) -> AsyncIterator[InProcessApp]:
    """`create_app` with its lifespan running (engine, usage writer, sweeps) and a key for it."""
    app = create_app(settings, catalog)
    async with app.router.lifespan_context(app):
        _, secret = app.state.services.keys.create(name="in-process")
        # An exception the app lets escape becomes the 500 a client would get, not a raise here.
        async with (
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                base_url=BASE_URL,
            ) as http,
            httpx2.AsyncClient(
                transport=httpx2.ASGITransport(app=app, raise_app_exceptions=False),
                base_url=BASE_URL,
            ) as sdk_http,
        ):
            yield InProcessApp(app, http, sdk_http, secret)
