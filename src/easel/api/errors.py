"""Turning every failure into OpenAI's error envelope, with an honest status code."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from easel.errors import EaselError, InvalidRequestError, NotFoundError, ServerError

log = logging.getLogger(__name__)

GENERIC_SERVER_ERROR = "The server had an error while processing your request. Sorry about that!"


def error_response(error: EaselError) -> JSONResponse:
    return JSONResponse(error.envelope(), status_code=error.status_code, headers=error.headers)


def unexpected_error_response() -> JSONResponse:
    """What a client sees of a fault we did not foresee: nothing of its details."""
    return error_response(ServerError(GENERIC_SERVER_ERROR))


async def _easel_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, EaselError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code in (404, 405):
        message = f"Invalid URL ({request.method} {request.url.path})"
        return error_response(NotFoundError(message, status_code=exc.status_code))
    return error_response(InvalidRequestError(str(exc.detail), status_code=exc.status_code))


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    return error_response(InvalidRequestError(f"Invalid request: {exc}"))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(EaselError, _easel_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
