"""The outermost app middleware: request ids, access logs, a 500 envelope for the unknown."""

from __future__ import annotations

import logging
import secrets
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from easel.api.context import request_id_var, response_headers_var
from easel.api.errors import answered_error, unexpected_error_response

log = logging.getLogger("easel.access")

# An unknown field's name is the client's text: the log keeps enough of it to recognise.
LOGGED_PARAM_CHARS = 64


class RequestContextMiddleware:
    """Gives each request an `x-request-id`, logs it, and answers unhandled faults with a 500
    envelope that leaks nothing, so the server keeps serving.

    Behind a proxy that already gives every request an `x-request-id` and returns it (Ray Serve's),
    `proxy_sets_request_id` adopts that id instead of sending a second header.
    """

    def __init__(self, app: ASGIApp, *, proxy_sets_request_id: bool = False) -> None:
        self.app = app
        self.proxy_sets_request_id = proxy_sets_request_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = self._proxy_request_id(scope) or "req_" + secrets.token_hex(16)
        token = request_id_var.set(request_id)
        extra_headers: dict[str, str] = {}
        headers_token = response_headers_var.set(extra_headers)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = list(message.get("headers", []))
                if not self.proxy_sets_request_id:
                    headers.append((b"x-request-id", request_id.encode()))
                elapsed_ms = int((time.perf_counter() - started) * 1000)
                headers.append((b"openai-processing-ms", str(elapsed_ms).encode()))
                # An error response may already carry some (a 429's rate-limit headers).
                present = {name.lower() for name, _ in headers}
                headers += [
                    (name.encode("latin-1"), value.encode("latin-1"))
                    for name, value in extra_headers.items()
                    if name.lower().encode("latin-1") not in present
                ]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if not response_started:
                await unexpected_error_response(scope)(scope, receive, send_with_id)
        finally:
            _log_access(scope, status, (time.perf_counter() - started) * 1000)
            request_id_var.reset(token)
            response_headers_var.reset(headers_token)

    def _proxy_request_id(self, scope: Scope) -> str | None:
        if not self.proxy_sets_request_id:
            return None
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                return str(value.decode("latin-1"))
        return None


def _log_access(scope: Scope, status: int, elapsed_ms: float) -> None:
    """The request's line; for an error, why (its type, code and param: never its message, which
    may quote what the client sent)."""
    fields: dict[str, object] = {
        "method": scope.get("method"),
        "path": scope.get("path"),
        "status": status,
        "duration_ms": round(elapsed_ms),
        # The key by id only: its secret never reaches a log.
        "key_id": scope.get("state", {}).get("key_id"),
    }
    reason = ""
    error = answered_error(scope)
    if error is not None:
        param = error.param[:LOGGED_PARAM_CHARS] if error.param is not None else None
        fields |= {"error_type": error.error_type, "error_code": error.code, "error_param": param}
        reason = f" {error.error_type} code={error.code} param={param}"
    log.info(
        "%s %s %s %.0fms%s",
        scope.get("method"),
        scope.get("path"),
        status,
        elapsed_ms,
        reason,
        extra=fields,
    )
