"""A deadline for receiving a request's body, so a body that never ends (a chunked upload that
stops sending) is answered with 408 instead of being waited on for ever."""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from easel.errors import InvalidRequestError


class BodyTimeoutMiddleware:
    """The whole body must arrive within `seconds` of the request's start. Once it has, reads
    are left alone: a handler may wait for the client's disconnect as long as it likes."""

    def __init__(self, app: ASGIApp, *, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = asyncio.get_running_loop().time() + self.seconds
        body_received = False

        async def receive_by_deadline() -> Message:
            nonlocal body_received
            if body_received:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise InvalidRequestError(
                    f"The request body was not received within {self.seconds:g} seconds.",
                    code="request_timeout",
                    status_code=408,
                    # The rest of the body may still be on its way: this connection is done.
                    headers={"connection": "close"},
                ) from None
            body_received = message["type"] != "http.request" or not message.get("more_body")
            return message

        await self.app(scope, receive_by_deadline, send)
