"""Two `easel serve` processes on one PostgreSQL database hammer one key together: its limits hold
(within README's margin), and every usage record is stored exactly once."""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from easel.db.database import Database
from easel.usage.store import UsageStore
from tests.limits_http import ADMIN_KEY, generate, new_key, usage
from tests.logs import log_lines
from tests.postgres import PostgresCluster
from tests.server import easel, start_server

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_two_processes_share_limits_and_lose_no_usage(
    postgres: PostgresCluster, tiny_sd: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    url = postgres.create_database()
    data_dir = tmp_path_factory.mktemp("pg-cli")
    upgraded = easel("db", "upgrade", "--database-url", url, data_dir=data_dir).stdout
    assert "Applied migrations: 0001, 0002, 0003" in upgraded
    assert (
        "Already up to date"
        in easel("db", "upgrade", "--database-url", url, data_dir=data_dir).stdout
    )
    common = ("--model", f"dall-e-2={tiny_sd}", "--database-url", url)
    env = {"EASEL_ADMIN_KEY": ADMIN_KEY}
    first = start_server(tmp_path_factory.mktemp("pg-a"), *common, "--log-prompts", env=env)
    second = start_server(tmp_path_factory.mktemp("pg-b"), *common, env=env)
    servers = [first, second]
    try:
        # Quota: 6 images; 12 one-image requests from both processes at once.
        quota_key, quota_secret = new_key(first, quota=6)
        with ThreadPoolExecutor(6) as pool:
            responses = list(
                pool.map(
                    lambda i: generate(servers[i % 2], quota_secret, prompt=f"hammer {i}"),
                    range(12),
                )
            )
        delivered = {
            r.headers["x-request-id"]: len(r.json()["data"])
            for r in responses
            if r.status_code == 200
        }
        refused = [r for r in responses if r.status_code != 200]
        assert sum(delivered.values()) == 6  # exact: reservations leave no in-flight margin
        assert all(r.json()["error"]["code"] == "insufficient_quota" for r in refused)

        # Requests per minute: 5, refilled one every 12 s while the hammering runs.
        _, rpm_secret = new_key(second, rpm=5)
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            statuses = list(
                pool.map(
                    lambda i: (
                        httpx.post(
                            servers[i % 2].base_url + "/v1/images/generations",
                            headers={"Authorization": f"Bearer {rpm_secret}"},
                            json={},
                            timeout=60,
                        ).status_code
                    ),
                    range(20),
                )
            )
        elapsed = time.monotonic() - started
        admitted = sum(1 for status in statuses if status != 429)
        assert 5 <= admitted <= 5 + math.floor(elapsed / 12)

        # Records of the first process are flushed by its usage endpoint; the second one's by
        # its shutdown, which must store everything it answered.
        assert usage(first, key_id=quota_key)["totals"]["images_delivered"] <= 6
        second.stop()
        database = Database(url)
        try:
            records = UsageStore(database).records(quota_key)
        finally:
            database.close()
        assert sorted(r.request_id for r in records) == sorted(delivered)
        assert sum(r.images_delivered for r in records) == 6

        # The first server was started with --log-prompts: its generation lines carry them.
        some_id = next(r.request_id for r in records if r.request_id in first.log())
        generation = [
            line
            for line in log_lines(first, some_id, count=2)
            if line["logger"] == "easel.generation"
        ]
        assert str(generation[0]["prompt"]).startswith("hammer ")

        # Readiness is honest about the database: drop it under the running server.
        postgres.drop_database(url)
        ready = httpx.get(first.base_url + "/readyz", timeout=30)
        assert ready.status_code == 503 and ready.json()["database"] == "unreachable"
    finally:
        for server in servers:
            server.stop()
