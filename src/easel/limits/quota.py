"""Image quotas in the database: delivered images per key and period, plus reservations for the
images of requests still in flight, so concurrent requests on any process cannot overshoot."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Connection, Table, delete, func, select

from easel.db.database import QuotaReservationRow, QuotaUsageRow, upsert

_USAGE = cast(Table, QuotaUsageRow.__table__)
_RESERVATIONS = cast(Table, QuotaReservationRow.__table__)


def period_of(quota_period: str, when: datetime) -> str:
    """The counter a quota period uses at `when` (UTC): 'total', '2026-11-24' or '2026-11'."""
    if quota_period == "day":
        return when.strftime("%Y-%m-%d")
    if quota_period == "month":
        return when.strftime("%Y-%m")
    return "total"


@dataclass(frozen=True)
class QuotaState:
    allowed: bool
    used: int  # delivered images counted in this period
    reserved: int  # images of requests in flight, including this one when allowed


def reserve(
    connection: Connection,
    *,
    request_id: str,
    key_id: str,
    period: str,
    quota: int,
    images: int,
    now: float,
    ttl_seconds: float,
) -> QuotaState:
    """Reserve `images` if delivered + in-flight + these stay within `quota`."""
    # The no-op upsert locks the key's counter row (PostgreSQL) or takes the write lock (SQLite),
    # so concurrent reservations for one key run one after the other.
    lock = (
        upsert(connection, _USAGE)
        .values(key_id=key_id, period=period, used=0)
        .on_conflict_do_update(
            index_elements=[_USAGE.c.key_id, _USAGE.c.period], set_={"used": _USAGE.c.used}
        )
        .returning(_USAGE.c.used)
    )
    used = int(connection.execute(lock).scalar_one())
    reserved = int(
        connection.execute(
            select(func.coalesce(func.sum(_RESERVATIONS.c.images), 0)).where(
                _RESERVATIONS.c.key_id == key_id,
                _RESERVATIONS.c.period == period,
                _RESERVATIONS.c.expires_at > now,
            )
        ).scalar_one()
    )
    if used + reserved + images > quota:
        return QuotaState(False, used, reserved)
    connection.execute(
        _RESERVATIONS.insert().values(
            request_id=request_id,
            key_id=key_id,
            period=period,
            images=images,
            expires_at=now + ttl_seconds,
        )
    )
    return QuotaState(True, used, reserved + images)


def settle(
    connection: Connection, *, request_id: str, key_id: str, period: str, delivered: int
) -> None:
    """Replace a request's reservation by the images it delivered (failed images are free)."""
    connection.execute(delete(_RESERVATIONS).where(_RESERVATIONS.c.request_id == request_id))
    if delivered:
        connection.execute(
            upsert(connection, _USAGE)
            .values(key_id=key_id, period=period, used=delivered)
            .on_conflict_do_update(
                index_elements=[_USAGE.c.key_id, _USAGE.c.period],
                set_={"used": _USAGE.c.used + delivered},
            )
        )


def used(connection: Connection, key_id: str, period: str) -> int:
    value = connection.execute(
        select(_USAGE.c.used).where(_USAGE.c.key_id == key_id, _USAGE.c.period == period)
    ).scalar()
    return int(value or 0)


def sweep(connection: Connection, now: float) -> int:
    """Drop reservations of requests whose process died before settling; the number removed."""
    return (
        connection.execute(delete(_RESERVATIONS).where(_RESERVATIONS.c.expires_at <= now)).rowcount
        or 0
    )
