"""The bytes behind a JSON edit's `image_url`: a base64 data URL, or (when the operator allows it)
an http(s) URL fetched only from public addresses, under size and time limits."""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from easel.errors import InvalidRequestError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]

MAX_REDIRECTS = 3
_DATA_URL_PREFIX = "data:"


@dataclass(frozen=True)
class UrlPolicy:
    """What a fetch may do. `resolve` and `allowed` are the DNS lookup and the address rule;
    tests replace them to stand a local server in for a public one."""

    max_bytes: int
    timeout_seconds: float
    resolve: Resolver
    allowed: Callable[[IPAddress], bool]


def is_public_address(address: IPAddress) -> bool:
    """Whether `address` is on the public internet: not loopback, private, link-local, shared,
    multicast or reserved, including IPv4 addresses carried inside IPv6 ones."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo or (None, None))[1]
        if embedded is not None:
            address = embedded
    return address.is_global and not address.is_multicast


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (an address literal: itself)."""
    infos = await asyncio.to_thread(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def decode_data_url(url: str, param: str) -> bytes:
    """The bytes of a base64 data URL (`data:image/png;base64,...`)."""
    header, comma, payload = url.partition(",")
    if not comma or not header.endswith(";base64"):
        raise InvalidRequestError(
            f"Invalid '{param}': expected a base64 data URL such as 'data:image/png;base64,...'.",
            param=param,
            code="invalid_image_url",
        )
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError(
            f"Invalid '{param}': the data URL's base64 payload is malformed.",
            param=param,
            code="invalid_image_url",
        ) from None


async def image_url_bytes(url: str, param: str, policy: UrlPolicy | None) -> bytes:
    """The image `url` names; `policy` None: this server fetches no http(s) URLs."""
    if url.startswith(_DATA_URL_PREFIX):
        return decode_data_url(url, param)
    if not url.startswith(("http://", "https://")):
        raise _bad_url(param, "it must be a data URL or an http(s) URL")
    if policy is None:
        raise _bad_url(
            param,
            "this server does not fetch image URLs; send the image as a base64 data URL",
        )
    try:
        async with asyncio.timeout(policy.timeout_seconds):
            return await _fetch(url, param, policy)
    except TimeoutError:
        raise _bad_url(
            param, f"fetching it took longer than {policy.timeout_seconds:g} seconds"
        ) from None


async def _fetch(url: str, param: str, policy: UrlPolicy) -> bytes:
    # No proxies from the environment: a proxy would connect where this check never looked.
    async with httpx.AsyncClient(trust_env=False, follow_redirects=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            request = await _pinned_request(url, param, policy)
            try:
                # Connect to the address that was checked; tell the server (and TLS) the name.
                async with client.stream(
                    "GET",
                    request.url,
                    headers={"Host": request.host_header},
                    extensions={"sni_hostname": request.sni_hostname},
                ) as response:
                    if response.is_redirect and "location" in response.headers:
                        url = str(request.original.join(response.headers["location"]))
                        continue
                    if response.status_code != 200:
                        raise _bad_url(param, f"it answered HTTP {response.status_code}")
                    return await _read_limited(response, param, policy.max_bytes)
            except httpx.HTTPError as exc:
                raise _bad_url(param, f"it could not be fetched ({type(exc).__name__})") from None
    raise _bad_url(param, f"it redirects more than {MAX_REDIRECTS} times")


@dataclass(frozen=True)
class _PinnedRequest:
    original: httpx.URL  # as the client (or a redirect) named it
    url: httpx.URL  # the same with the checked address in place of the host name
    host_header: str
    sni_hostname: str


async def _pinned_request(url: str, param: str, policy: UrlPolicy) -> _PinnedRequest:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        raise _bad_url(param, "it is not a valid URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise _bad_url(param, "redirects may lead only to http(s) URLs")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        addresses = await policy.resolve(parsed.host, port)
    except (OSError, ValueError):
        raise _bad_url(param, f"its host '{parsed.host}' could not be resolved") from None
    refused = [address for address in addresses if not policy.allowed(address)]
    if not addresses or refused:
        where = refused[0] if refused else "no address"
        raise _bad_url(
            param,
            f"its host resolves to {where}, which is not a public address: this server "
            "fetches images from the public internet only",
        )
    host_header = parsed.netloc.decode("ascii")
    return _PinnedRequest(
        original=parsed,
        url=parsed.copy_with(host=str(addresses[0])),
        host_header=host_header,
        sni_hostname=parsed.host,
    )


async def _read_limited(response: httpx.Response, param: str, max_bytes: int) -> bytes:
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(param, max_bytes)
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > max_bytes:
            raise _too_large(param, max_bytes)
    return bytes(body)


def _too_large(param: str, max_bytes: int) -> InvalidRequestError:
    return InvalidRequestError(
        f"Invalid '{param}': the image is larger than this model's limit of {max_bytes} bytes.",
        param=param,
        code="image_too_large",
    )


def _bad_url(param: str, why: str) -> InvalidRequestError:
    return InvalidRequestError(f"Invalid '{param}': {why}.", param=param, code="invalid_image_url")
