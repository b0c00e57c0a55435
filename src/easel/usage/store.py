"""Usage records: one per generation request, written once (keyed by request id), and summed by key,
model and day for `easel usage` and `GET /admin/usage`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Literal, cast

from sqlalchemy import Table, case, func, select

from easel.db.database import Database, UsageRow, upsert
from easel.limits import quota

_TABLE = cast(Table, UsageRow.__table__)

# Which route a request came in by: /v1/images/generations, /edits or /variations.
Endpoint = Literal["generations", "edits", "variations"]
GENERATIONS: Endpoint = "generations"


@dataclass(frozen=True)
class UsageRecord:
    request_id: str
    created_at: datetime
    key_id: str
    user: str | None
    model: str
    size: str
    quality: str
    n: int
    images_delivered: int
    queued_ms: int
    generating_ms: int
    status: int  # the HTTP status the request was answered with
    # The tokens of the `usage` the response reported; 0 where it reported none.
    input_text_tokens: int = 0
    input_image_tokens: int = 0
    output_tokens: int = 0
    # The quota counter the request reserved from, settled together with the record.
    quota_period: str | None = None
    endpoint: Endpoint = GENERATIONS

    def row(self) -> dict[str, object]:
        values = asdict(self)
        del values["quota_period"]
        values["day"] = self.created_at.strftime("%Y-%m-%d")
        return values


@dataclass(frozen=True)
class UsageFilter:
    key_id: str | None = None
    model: str | None = None
    user: str | None = None
    since: date | None = None  # first day included
    until: date | None = None  # last day included


@dataclass(frozen=True)
class UsageSummary:
    """Totals for one key, model and day."""

    key_id: str
    model: str
    day: str
    requests: int
    failed_requests: int
    images_requested: int
    images_delivered: int
    queued_ms: int
    generating_ms: int
    input_tokens: int
    output_tokens: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


SUMMARY_FIELDS = tuple(UsageSummary.__dataclass_fields__)


class UsageStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    def write(self, records: Iterable[UsageRecord]) -> int:
        """Store records in one transaction and settle their quota reservations; a record whose
        request id is already stored is skipped with its settlement, so a retried batch never
        counts twice. The number of records newly stored."""
        stored = 0
        with self._db.engine.begin() as connection:
            for record in records:
                inserted = connection.execute(
                    upsert(connection, _TABLE)
                    .values(**record.row())
                    .on_conflict_do_nothing(index_elements=[_TABLE.c.request_id])
                    .returning(_TABLE.c.request_id)
                ).scalar()
                if inserted is None:
                    continue
                stored += 1
                if record.quota_period is not None:
                    quota.settle(
                        connection,
                        request_id=record.request_id,
                        key_id=record.key_id,
                        period=record.quota_period,
                        delivered=record.images_delivered,
                    )
        return stored

    def summary(self, where: UsageFilter = UsageFilter()) -> list[UsageSummary]:
        failed = case((_TABLE.c.status >= 400, 1), else_=0)
        query = (
            select(
                _TABLE.c.key_id,
                _TABLE.c.model,
                _TABLE.c.day,
                func.count(),
                func.sum(failed),
                func.sum(_TABLE.c.n),
                func.sum(_TABLE.c.images_delivered),
                func.sum(_TABLE.c.queued_ms),
                func.sum(_TABLE.c.generating_ms),
                func.sum(_TABLE.c.input_text_tokens + _TABLE.c.input_image_tokens),
                func.sum(_TABLE.c.output_tokens),
            )
            .group_by(_TABLE.c.key_id, _TABLE.c.model, _TABLE.c.day)
            .order_by(_TABLE.c.day, _TABLE.c.key_id, _TABLE.c.model)
        )
        if where.key_id is not None:
            query = query.where(_TABLE.c.key_id == where.key_id)
        if where.model is not None:
            query = query.where(_TABLE.c.model == where.model)
        if where.user is not None:
            query = query.where(_TABLE.c.user == where.user)
        if where.since is not None:
            query = query.where(_TABLE.c.day >= where.since.isoformat())
        if where.until is not None:
            query = query.where(_TABLE.c.day <= where.until.isoformat())
        with self._db.engine.connect() as connection:
            return [
                UsageSummary(row[0], row[1], row[2], *(int(value or 0) for value in row[3:]))
                for row in connection.execute(query)
            ]

    def records(self, key_id: str | None = None) -> list[UsageRecord]:
        """Raw records, oldest first (for audits and tests)."""
        query = select(UsageRow).order_by(UsageRow.created_at)
        if key_id is not None:
            query = query.where(UsageRow.key_id == key_id)
        with self._db.session() as session:
            return [
                UsageRecord(
                    request_id=row.request_id,
                    created_at=row.created_at,
                    key_id=row.key_id,
                    user=row.user,
                    model=row.model,
                    size=row.size,
                    quality=row.quality,
                    n=row.n,
                    images_delivered=row.images_delivered,
                    queued_ms=row.queued_ms,
                    generating_ms=row.generating_ms,
                    status=row.status,
                    input_text_tokens=row.input_text_tokens,
                    input_image_tokens=row.input_image_tokens,
                    output_tokens=row.output_tokens,
                    endpoint=cast(Endpoint, row.endpoint),
                )
                for row in session.scalars(query)
            ]


def totals(rows: Iterable[UsageSummary]) -> dict[str, int]:
    """The numeric columns of a summary, summed."""
    numeric = SUMMARY_FIELDS[3:]
    result = dict.fromkeys(numeric, 0)
    for row in rows:
        for name in numeric:
            result[name] += getattr(row, name)
    return result
