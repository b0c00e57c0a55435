"""Limits on HTTP connections that hold before any request reaches the app (so before
authentication): the size of a request head, the time to send it, and how many connections
are open at once. `easel serve` runs uvicorn with this protocol.

Built on uvicorn's h11 implementation rather than httptools: h11 refuses a head that grows past
its buffer limit (uvicorn's `h11_max_incomplete_event_size`), while httptools buffers any size.
Parsing in Python costs microseconds per request, nothing beside a pipeline call.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from dataclasses import dataclass
from http import HTTPStatus
from typing import ClassVar, cast

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from easel.api.errors import error_response
from easel.errors import EaselError, InvalidRequestError, ServiceUnavailableError

log = logging.getLogger(__name__)

# How soon a client refused for too many connections should try again.
RETRY_AFTER_SECONDS = 1
# Numbers connections in the order they fell idle (a clock can give several the same time).
_idle_order = itertools.count()


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int
    header_timeout_seconds: float
    max_header_bytes: int


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 connection, plus a deadline for each request head (from the connection's
    start, or a head's first byte after a keep-alive pause) and a cap on open connections.

    At the cap, a new connection first makes room by closing the connection idle longest (one
    between requests or still sending its head: none of them has a request in the app); when
    every connection has one, the newcomer's request gets 503 `too_many_connections`.
    """

    limits: ClassVar[ConnectionLimits]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream server's transport: asyncio's, or uvloop's that does not subclass it.
        super().connection_made(cast(asyncio.Transport, transport))
        self._head_timer: asyncio.TimerHandle | None = None
        self._idle_turn = next(_idle_order)
        if self._over_capacity() and not self._make_room():
            log.warning("over %d open connections: refusing one", self.limits.max_connections)
            self.app = _too_many_connections
        self._await_head()

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:
            self._await_head()
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._stop_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        self._idle_turn = next(_idle_order)
        super().on_response_complete()

    def send_400_response(self, msg: str) -> None:
        # h11 reports a head over its buffer limit as a protocol error: say what it was.
        if len(self.conn.trailing_data[0]) > self.limits.max_header_bytes:
            self._answer_and_close(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                InvalidRequestError(
                    f"The request head is larger than this server's limit of "
                    f"{self.limits.max_header_bytes} bytes.",
                    code="header_too_large",
                ),
            )
        else:
            super().send_400_response(msg)

    def _await_head(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(
                self.limits.header_timeout_seconds, self._head_timed_out
            )

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if not self.conn.trailing_data[0]:  # nothing sent: there is no request to answer
            self.transport.close()
            return
        self._answer_and_close(
            HTTPStatus.REQUEST_TIMEOUT,
            InvalidRequestError(
                f"The request head was not received within "
                f"{self.limits.header_timeout_seconds:g} seconds.",
                code="request_timeout",
            ),
        )

    def _answer_and_close(self, status: HTTPStatus, error: EaselError) -> None:
        """Answer a request h11 could not parse (so cannot frame a response for) and close."""
        body = json.dumps(error.envelope()).encode()
        head = (
            f"HTTP/1.1 {status.value} {status.phrase}\r\n"
            "content-type: application/json\r\n"
            f"content-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        )
        self.transport.write(head.encode("ascii") + body)
        self.transport.close()

    def _over_capacity(self) -> bool:
        # Closed connections leave the set only when the loop reports them lost.
        return len(self.connections) > self.limits.max_connections and (
            sum(not other.transport.is_closing() for other in self.connections)
            > self.limits.max_connections
        )

    def _between_requests(self) -> bool:
        return not self.transport.is_closing() and (
            self.cycle is None or self.cycle.response_complete
        )

    def _make_room(self) -> bool:
        """Close the connection idle longest; False when every other one has a request in
        the app."""
        idle = [
            other
            for other in self.connections
            if other is not self
            and isinstance(other, BoundedH11Protocol)
            and other._between_requests()
        ]
        if not idle:
            return False
        min(idle, key=lambda other: other._idle_turn).transport.close()
        return True


def bounded_protocol(limits: ConnectionLimits) -> type[BoundedH11Protocol]:
    """The protocol class for uvicorn's `http=`, carrying these limits."""

    class LimitedH11Protocol(BoundedH11Protocol):
        pass

    LimitedH11Protocol.limits = limits
    return LimitedH11Protocol


_too_many_connections = error_response(
    ServiceUnavailableError(
        "The server has too many open connections. Try again in a moment.",
        code="too_many_connections",
        headers={"retry-after": str(RETRY_AFTER_SECONDS), "connection": "close"},
    )
)
