"""A limited key's x-ratelimit-* headers, added to every response to it, errors included."""

from __future__ import annotations

from starlette.types import Scope


def rate_limit_headers(scope: Scope, present: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The headers the route left in `request.state.rate_limit_headers`, minus those already set."""
    extra = scope.get("state", {}).get("rate_limit_headers")
    if not extra:
        return []
    names = {name.lower() for name, _ in present}
    encoded = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in extra.items()]
    return [(name, value) for name, value in encoded if name.lower() not in names]
