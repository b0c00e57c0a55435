"""The Easel side: `easel serve` in a subprocess, driven over HTTP by N concurrent clients."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from easel.bench.stats import RunSummary
from easel.bench.workload import Workload
from easel.db.database import Database
from easel.keys.store import KeyStore
from easel.settings import Settings

MODEL = "bench"
START_TIMEOUT_SECONDS = 600


@dataclass(frozen=True)
class Server:
    base_url: str
    key: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def easel_server(
    workload: Workload, data_dir: Path, extra_args: tuple[str, ...] = ()
) -> Iterator[Server]:
    """A fresh server with one model, `bench`, running the workload's settings; its pipeline is
    loaded and warm when this yields."""
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir / "bench.yaml"
    config.write_text(workload.catalog_yaml(MODEL))
    database = Database(Settings(data_dir=data_dir).resolved_database_url)
    try:
        _, key = KeyStore(database).create("bench")
    finally:
        database.close()
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "easel",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--config",
        str(config),
        "--log-level",
        "warning",
        *extra_args,
    ]
    log = open(data_dir / "server.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    server = Server(f"http://127.0.0.1:{port}", key)
    try:
        _wait_until_ready(server, process, workload)
        yield server
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _wait_until_ready(server: Server, process: subprocess.Popen[bytes], workload: Workload) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"easel serve exited with {process.returncode}")
        try:
            # Two requests: the first waits for the pipeline to load, the second is warm.
            for _ in range(2):
                response = httpx.post(
                    server.base_url + "/v1/images/generations",
                    json=_body(workload),
                    headers={"Authorization": f"Bearer {server.key}"},
                    timeout=START_TIMEOUT_SECONDS,
                )
                response.raise_for_status()
            return
        except httpx.TransportError:
            time.sleep(0.5)
    raise RuntimeError("easel serve did not become ready in time")


def _body(workload: Workload) -> dict[str, Any]:
    return {"model": MODEL, "prompt": workload.prompt, "response_format": "b64_json"}


@dataclass
class LoadRun:
    """What the clients saw: one latency per request, one batch size per image received."""

    latencies: list[float] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)
    failures: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, other: LoadRun) -> None:
        self.latencies += other.latencies
        self.batch_sizes += other.batch_sizes
        for status, count in other.failures.items():
            self.failures[status] = self.failures.get(status, 0) + count
        self.seconds += other.seconds

    def summary(self) -> dict[str, Any]:
        result = RunSummary.of(self.latencies, len(self.batch_sizes), self.seconds).as_dict()
        result["failures"] = self.failures
        result["mean_batch_images"] = round(
            sum(self.batch_sizes) / max(1, len(self.batch_sizes)), 2
        )
        return result


def run_clients(server: Server, workload: Workload, concurrency: int, requests: int) -> LoadRun:
    """`requests` requests spread over `concurrency` clients that each send the next request as
    soon as the previous one is answered."""
    return asyncio.run(_run_clients(server, workload, concurrency, requests))


async def _run_clients(
    server: Server, workload: Workload, concurrency: int, requests: int
) -> LoadRun:
    remaining = requests
    run = LoadRun()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {server.key}"}
    async with httpx.AsyncClient(
        base_url=server.base_url, limits=limits, timeout=600, headers=headers
    ) as http:

        async def client() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                begun = time.perf_counter()
                response = await http.post("/v1/images/generations", json=_body(workload))
                run.latencies.append(time.perf_counter() - begun)
                if response.status_code != 200:
                    run.failures[response.status_code] = (
                        run.failures.get(response.status_code, 0) + 1
                    )
                    continue
                png = base64.b64decode(response.json()["data"][0]["b64_json"])
                run.batch_sizes.append(int(png_text(png).get("batch_images", "1")))

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        run.seconds = time.perf_counter() - started
    return run


def png_text(png: bytes) -> dict[str, str]:
    """The iTXt/tEXt chunks of a PNG, read without decoding its pixels."""
    text: dict[str, str] = {}
    offset = 8
    while offset + 8 <= len(png):
        length, kind = struct.unpack(">I4s", png[offset : offset + 8])
        data = png[offset + 8 : offset + 8 + length]
        if kind == b"IDAT":
            break
        if kind == b"iTXt":
            keyword, _, rest = data.partition(b"\x00")
            # compression flag, method, language tag NUL, translated keyword NUL, then the text.
            value = rest[2:].split(b"\x00", 2)[-1]
            text[keyword.decode("latin-1")] = value.decode("utf-8")
        elif kind == b"tEXt":
            keyword, _, value = data.partition(b"\x00")
            text[keyword.decode("latin-1")] = value.decode("latin-1")
        offset += 12 + length
    return text
