"""Turning every failure into OpenAI's error envelope, with an honest status code."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope

from easel.errors import EaselError, InvalidRequestError, NotFoundError, ServerError

log = logging.getLogger(__name__)

GENERIC_SERVER_ERROR = "The server had an error while processing your request. Sorry about that!"
# Where the error a request was answered with waits for the access log line (middleware.py).
_ANSWERED_ERROR = "easel_error"


def error_response(error: EaselError) -> JSONResponse:
    return JSONResponse(error.envelope(), status_code=error.status_code, headers=error.headers)


def unexpected_error_response(scope: Scope) -> JSONResponse:
    """What a client sees of a fault we did not foresee: nothing of its details."""
    error = ServerError(GENERIC_SERVER_ERROR)
    remember_error(scope, error)
    return error_response(error)


def remember_error(scope: Scope, error: EaselError) -> None:
    """Keep the error a request is answered with, for its access log line."""
    scope.setdefault("state", {})[_ANSWERED_ERROR] = error


def answered_error(scope: Scope) -> EaselError | None:
    error = scope.get("state", {}).get(_ANSWERED_ERROR)
    return error if isinstance(error, EaselError) else None


def _answer(request: Request, error: EaselError) -> JSONResponse:
    remember_error(request.scope, error)
    return error_response(error)


async def _easel_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, EaselError)
    return _answer(request, exc)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code in (404, 405):
        message = f"Invalid URL ({request.method} {request.url.path})"
        return _answer(request, NotFoundError(message, status_code=exc.status_code))
    return _answer(request, InvalidRequestError(str(exc.detail), status_code=exc.status_code))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    return _answer(request, InvalidRequestError(f"Invalid request: {exc}"))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(EaselError, _easel_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
