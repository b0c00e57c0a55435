"""A delivered request's usage record is stored before its response is sent, so killing the server
(kill -9) right after the response loses neither the record nor the quota it settles."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import httpx

from easel.db.database import Database
from easel.usage.store import UsageStore
from tests.server import create_key, start_server

# Longer than a tiny generation takes, far shorter than the wait a response allows its record.
LOCK_SECONDS = 2.0


def test_the_record_is_stored_before_the_response_and_survives_kill_9(
    tmp_path: Path, tiny_sd: Path
) -> None:
    server = start_server(tmp_path, "--model", f"dall-e-2={tiny_sd}")
    try:
        secret = create_key(tmp_path)

        def generate() -> httpx.Response:
            return httpx.post(
                server.base_url + "/v1/images/generations",
                headers={"Authorization": f"Bearer {secret}"},
                json={"prompt": "a red square", "size": "256x256", "response_format": "b64_json"},
                timeout=300,
            )

        assert generate().status_code == 200  # the model is loaded
        # Another writer (as `easel keys` may be) holds the database: the response must wait
        # for its record rather than go out with the record still in memory.
        other_writer = sqlite3.connect(tmp_path / "easel.db", isolation_level=None)
        other_writer.execute("BEGIN IMMEDIATE")
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(generate)
            answered_while_locked = bool(wait([pending], timeout=LOCK_SECONDS).done)
            other_writer.execute("ROLLBACK")
            other_writer.close()
            response = pending.result()
            server.process.kill()  # SIGKILL: nothing runs after the response
            server.process.wait()
        assert not answered_while_locked
        assert response.status_code == 200
    finally:
        server.stop()
    database = Database(f"sqlite:///{tmp_path / 'easel.db'}")
    try:
        stored = {record.request_id for record in UsageStore(database).records()}
    finally:
        database.close()
    assert response.headers["x-request-id"] in stored
