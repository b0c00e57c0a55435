"""Usage records name their endpoint; records stored before the column existed read as
generations after the upgrade."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from easel.db.database import Database
from easel.db.migrations import upgrade
from easel.usage.store import UsageRecord, UsageStore

GENERATION = UsageRecord(
    request_id="req_old",
    created_at=datetime(2026, 11, 26, tzinfo=UTC),
    key_id="key_1",
    user=None,
    model="dall-e-2",
    size="256x256",
    quality="standard",
    n=1,
    images_delivered=1,
    queued_ms=1,
    generating_ms=2,
    status=200,
)


def test_records_before_the_endpoint_column_are_generations(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'easel.db'}"
    old = Database(url, migrate=False)
    # The revision before the endpoint column (0005).
    upgrade(old.engine, "0004")
    row = {**GENERATION.row(), "created_at": GENERATION.created_at.isoformat()}
    del row["endpoint"]
    with old.engine.begin() as connection:
        columns = ", ".join(row)
        connection.execute(
            text(f"INSERT INTO usage_records ({columns}) VALUES (:{', :'.join(row)})"), row
        )
    old.close()
    database = Database(url)
    try:
        store = UsageStore(database)
        store.write([replace(GENERATION, request_id="req_edit", endpoint="edits")])
        endpoints = {r.request_id: r.endpoint for r in store.records()}
        assert endpoints == {"req_old": "generations", "req_edit": "edits"}
    finally:
        database.close()
