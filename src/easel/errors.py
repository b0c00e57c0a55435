"""Easel's one exception hierarchy: every error carries what OpenAI's error envelope needs."""

from __future__ import annotations

from collections.abc import Iterable


class EaselError(Exception):
    """An error answered with OpenAI's envelope `{"error": {message, type, param, code}}`."""

    status_code: int = 500
    error_type: str = "server_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        if status_code is not None:
            self.status_code = status_code
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}

    def envelope(self) -> dict[str, dict[str, str | None]]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequestError(EaselError):
    status_code = 400
    error_type = "invalid_request_error"


class AuthenticationError(InvalidRequestError):
    status_code = 401


class PermissionDeniedError(InvalidRequestError):
    status_code = 403


class NotFoundError(InvalidRequestError):
    status_code = 404


class GoneError(InvalidRequestError):
    status_code = 410


class PayloadTooLargeError(InvalidRequestError):
    status_code = 413


class RateLimitError(EaselError):
    """Over a rate: worth retrying after `Retry-After` (OpenAI's type for any rate: `requests`)."""

    status_code = 429
    error_type = "requests"


class InsufficientQuotaError(EaselError):
    """Out of quota: retrying cannot help, so the SDKs are told not to (`x-should-retry: false`)."""

    status_code = 429
    error_type = "insufficient_quota"


class ServerError(EaselError):
    status_code = 500
    error_type = "server_error"


class ServiceUnavailableError(EaselError):
    status_code = 503
    error_type = "server_error"


class DeadlineExceededError(EaselError):
    status_code = 504
    error_type = "server_error"


def quote_list(values: Iterable[str]) -> str:
    """OpenAI's way of listing allowed values: 'a', 'b', and 'c'."""
    quoted = [f"'{v}'" for v in values]
    if len(quoted) <= 2:
        return " and ".join(quoted)
    return ", ".join(quoted[:-1]) + ", and " + quoted[-1]


def invalid_value(param: str, value: object, allowed: Iterable[str]) -> InvalidRequestError:
    return InvalidRequestError(
        f"Invalid value: '{value}'. Supported values are: {quote_list(allowed)}.",
        param=param,
        code="invalid_value",
    )


def unsupported_value(
    param: str, value: object, supported: Iterable[object]
) -> InvalidRequestError:
    """A value OpenAI defines for `param` that this model cannot honour, in OpenAI's wording."""
    return InvalidRequestError(
        f"Unsupported value: '{param}' does not support {_json_literal(value)} with this model. "
        f"Supported values are: {', '.join(_json_literal(v) for v in supported)}.",
        param=param,
        code="unsupported_value",
    )


def _json_literal(value: object) -> str:
    # As the request spelled it: true, 0, 'png'.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"'{value}'"
    return str(value)


def unknown_parameter(param: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"Unknown parameter: '{param}'.", param=param, code="unknown_parameter"
    )
