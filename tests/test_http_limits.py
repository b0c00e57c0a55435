"""The limits `easel serve` holds before authentication, tried with real sockets on loopback: head
size, time to send the head and the body, open connections. Also what an operator's server
shows of itself: API docs only when asked for, log lines that a client cannot forge, and keys'
limits that the database can hold."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.limits_http import ADMIN_KEY, admin
from tests.server import RunningServer, easel, start_server

MAX_CONNECTIONS = 4
HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 2.0
MAX_HEADER_BYTES = 4096


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory, tiny_sd: Path) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("limited"),
        "--model",
        f"dall-e-2={tiny_sd}",
        "--log-format",
        "text",
        "--api-docs",
        "--max-connections",
        str(MAX_CONNECTIONS),
        "--header-timeout",
        str(HEADER_TIMEOUT),
        "--body-timeout",
        str(BODY_TIMEOUT),
        "--max-header-bytes",
        str(MAX_HEADER_BYTES),
        env={"EASEL_ADMIN_KEY": ADMIN_KEY},
    )
    yield running
    running.stop()


def connect(server: RunningServer) -> socket.socket:
    port = int(server.base_url.rsplit(":", 1)[1])
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a 10 s socket timeout fails
    the test: the server never closed it)."""
    received = b""
    with sock:
        while chunk := sock.recv(65536):
            received += chunk
    return received


def envelope_of(reply: bytes) -> dict[str, str | None]:
    _, _, body = reply.partition(b"\r\n\r\n")
    error: dict[str, str | None] = json.loads(body)["error"]
    return error


def admin_post_head(**headers: str) -> bytes:
    lines = [
        "POST /admin/keys HTTP/1.1",
        "Host: test",
        f"Authorization: Bearer {ADMIN_KEY}",
        "Content-Type: application/json",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_a_head_that_never_ends_is_cut_off(limited: RunningServer) -> None:
    sock = connect(limited)
    started = time.monotonic()
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Slow: ")
    reply = until_closed(sock)
    assert HEADER_TIMEOUT * 0.9 <= time.monotonic() - started < HEADER_TIMEOUT + 5
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert envelope_of(reply)["code"] == "request_timeout"


def test_a_silent_connection_is_closed(limited: RunningServer) -> None:
    started = time.monotonic()
    assert until_closed(connect(limited)) == b""
    assert time.monotonic() - started < HEADER_TIMEOUT + 5


def test_a_head_over_the_limit_is_431(limited: RunningServer) -> None:
    sock = connect(limited)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Big: " + b"a" * 2 * MAX_HEADER_BYTES)
    reply = until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 431 ")
    assert envelope_of(reply)["code"] == "header_too_large"


def test_a_body_that_never_ends_gets_408(limited: RunningServer) -> None:
    sock = connect(limited)
    started = time.monotonic()
    sock.sendall(admin_post_head(**{"Transfer-Encoding": "chunked"}) + b'5\r\n{"nam\r\n')
    reply = until_closed(sock)
    assert BODY_TIMEOUT * 0.9 <= time.monotonic() - started < BODY_TIMEOUT + 5
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert envelope_of(reply)["code"] == "request_timeout"


def test_idle_connections_beyond_the_cap_make_room(limited: RunningServer) -> None:
    idle = [connect(limited) for _ in range(MAX_CONNECTIONS + 2)]
    try:
        time.sleep(0.2)
        assert httpx.get(limited.base_url + "/healthz", timeout=10).status_code == 200
        # The oldest idle connections were closed to make room for the newer ones.
        idle[0].settimeout(HEADER_TIMEOUT / 2)
        assert idle[0].recv(1) == b""
    finally:
        for sock in idle:
            sock.close()


def test_beyond_the_cap_of_busy_connections_a_request_gets_503(limited: RunningServer) -> None:
    busy = [connect(limited) for _ in range(MAX_CONNECTIONS)]
    for sock in busy:  # each request waits in the app for a body that does not come
        sock.sendall(admin_post_head(**{"Content-Length": "100"}))
    time.sleep(0.3)
    response = httpx.get(limited.base_url + "/healthz", timeout=10)
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "too_many_connections"
    assert response.headers["retry-after"] == "1"
    # Once their bodies are late the busy connections are answered and closed: room again.
    assert all(until_closed(sock).startswith(b"HTTP/1.1 408 ") for sock in busy)
    assert httpx.get(limited.base_url + "/healthz", timeout=10).status_code == 200


def test_docs_are_served_only_when_asked_for_and_without_admin_routes(
    server: RunningServer, limited: RunningServer
) -> None:
    assert httpx.get(server.base_url + "/docs").status_code == 404
    assert httpx.get(server.base_url + "/openapi.json").status_code == 404
    assert httpx.get(limited.base_url + "/docs").status_code == 200
    paths = httpx.get(limited.base_url + "/openapi.json").json()["paths"]
    assert "/v1/images/generations" in paths
    assert not [path for path in paths if path.startswith("/admin")]


def test_a_newline_in_the_path_cannot_forge_a_text_log_line(limited: RunningServer) -> None:
    sock = connect(limited)
    sock.sendall(b"GET /v1/nothing%0aINFO%20forged-line HTTP/1.1\r\nHost: test\r\n\r\n")
    assert sock.recv(65536).startswith(b"HTTP/1.1 404 ")
    sock.close()
    deadline = time.monotonic() + 10
    while "forged-line" not in limited.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = limited.log()
    assert "/v1/nothing\\nINFO forged-line 404" in log
    assert not [line for line in log.splitlines() if line.startswith("INFO forged-line")]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("quota", 2**63),
        ("rpm", 2**31),
        ("expires_at", "100000000d"),
        ("expires_at", "9" * 5000 + "d"),
        ("name", "n" * 201),
    ],
)
def test_admin_refuses_what_the_database_cannot_hold(
    limited: RunningServer, field: str, value: object
) -> None:
    response = admin(limited, "POST", "/admin/keys", json={"name": "big", field: value})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == field


@pytest.mark.parametrize(
    ("option", "value"),
    [("--quota", str(2**63)), ("--expires", "100000000d"), ("--name", "n" * 201)],
)
def test_keys_cli_refuses_what_the_database_cannot_hold(
    tmp_path: Path, option: str, value: str
) -> None:
    result = easel("keys", "create", option, value, data_dir=tmp_path, check=False)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "easel keys create:" in result.stderr
