"""The usage writer keeps records through a database outage and stores them all on close; the
admin key is refused when it could be guessed."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from easel.db.database import Database
from easel.settings import Settings
from easel.usage.store import UsageRecord, UsageStore
from easel.usage.writer import UsageWriter
from tests.postgres import PostgresCluster, set_connections_allowed


def record(request_id: str) -> UsageRecord:
    return UsageRecord(
        request_id=request_id,
        created_at=datetime.now(UTC),
        key_id="key_w",
        user=None,
        model="dall-e-2",
        size="256x256",
        quality="standard",
        n=1,
        images_delivered=1,
        queued_ms=0,
        generating_ms=1,
        status=200,
    )


@pytest.mark.postgres
def test_records_survive_a_database_outage_and_are_flushed_on_close(
    postgres: PostgresCluster,
) -> None:
    url = postgres.create_database()
    database = Database(url)
    store = UsageStore(database)
    writer = UsageWriter(store)
    writer.start()
    try:
        writer.submit(record("req_before"))
        assert writer.flush()
        set_connections_allowed(postgres, url, False)
        for i in range(5):
            writer.submit(record(f"req_during_{i}"))
        assert not writer.flush(timeout=1.5)  # the database is away: nothing can be stored yet
        set_connections_allowed(postgres, url, True)
        writer.submit(record("req_after"))
        closer = threading.Thread(target=writer.close)
        closer.start()
        closer.join(60)
        stored = sorted(r.request_id for r in store.records("key_w"))
        assert stored == sorted(["req_before", "req_after", *(f"req_during_{i}" for i in range(5))])
    finally:
        database.close()
        postgres.drop_database(url)


@pytest.mark.parametrize(
    ("admin_key", "reason"),
    [("short-secret", "at least 32"), ("ab" * 20, "repetitive"), ("x" * 40, "repetitive")],
)
def test_weak_admin_keys_are_refused(admin_key: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        Settings(admin_key=admin_key)


def test_the_admin_key_must_differ_from_the_url_secret() -> None:
    secret = "Q7v-2mZ_kP9xL4wR8sT1yU6bN3cV0aE5"
    with pytest.raises(ValueError, match="differ"):
        Settings(admin_key=secret, url_secret=secret)
    Settings(admin_key=secret)
