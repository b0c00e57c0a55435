"""Running the real `easel serve` in a subprocess on a free port, as a user would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def easel(*args: str, data_dir: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the `easel` CLI and capture what it prints."""
    return subprocess.run(
        [sys.executable, "-m", "easel", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        check=check,
        timeout=120,
    )


def create_key(data_dir: Path, name: str = "test") -> str:
    result = easel("keys", "create", "--name", name, data_dir=data_dir)
    return result.stdout.strip().splitlines()[-1]


def sdk_client(server: RunningServer) -> openai.OpenAI:
    """An openai SDK client of `server` with a new key; no retries, so a test sees the server's
    first answer."""
    key = create_key(server.data_dir)
    return openai.OpenAI(api_key=key, base_url=server.base_url + "/v1", max_retries=0, timeout=300)


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    base_url: str
    data_dir: Path
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> RunningServer:
    """Start `easel serve` and wait until it accepts HTTP requests (models may still be loading)."""
    port = free_port()
    log_path = data_dir / f"server-{port}.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "easel", "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--data-dir", str(data_dir), *args]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    server = RunningServer(process, f"http://127.0.0.1:{port}", data_dir, log_path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"easel serve exited with {process.returncode}:\n{server.log()}")
        try:
            httpx.get(server.base_url + "/v1/models", timeout=1)
            return server
        except httpx.TransportError:
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"easel serve did not start in time:\n{server.log()}")
