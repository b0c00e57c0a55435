"""Rate limits as GCRA buckets in the database, taken with one atomic conditional upsert each, so
every server process sharing the database sees the same counts."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Connection, Float, Table, case, delete, literal, select

from easel.db.database import RateBucketRow, upsert

_TABLE = cast(Table, RateBucketRow.__table__)


@dataclass(frozen=True)
class RateLimit:
    """`limit` units per `period` seconds for `bucket`; a request takes `units` of them."""

    bucket: str
    limit: int
    units: int
    period: float = 60.0

    @property
    def interval(self) -> float:
        """Seconds after which one unit is available again."""
        return self.period / self.limit


@dataclass(frozen=True)
class BucketState:
    allowed: bool
    remaining: int
    reset_seconds: float  # until the bucket is full again
    retry_after: float | None  # when refused: seconds until the units fit; None if they never will


def take(connection: Connection, rate: RateLimit, now: float) -> BucketState:
    """Take `rate.units` from the bucket if they fit; the caller's transaction makes several
    buckets all-or-nothing (roll back when one refuses)."""
    cost = rate.interval * rate.units
    if rate.units > rate.limit:
        state = _read(connection, rate, now)
        return BucketState(False, state.remaining, state.reset_seconds, None)
    current = _TABLE.c.tat
    start = case((current > now, current), else_=literal(now, Float))
    statement = (
        upsert(connection, _TABLE)
        .values(bucket=rate.bucket, tat=now + cost)
        .on_conflict_do_update(
            index_elements=[_TABLE.c.bucket],
            set_={"tat": start + cost},
            where=start + cost - now <= rate.period,
        )
        .returning(_TABLE.c.tat)
    )
    tat = connection.execute(statement).scalar()
    if tat is not None:
        return BucketState(True, _remaining(rate, tat, now), max(tat - now, 0.0), None)
    state = _read(connection, rate, now)
    return BucketState(False, state.remaining, state.reset_seconds, state.retry_after)


def sweep(connection: Connection, now: float) -> int:
    """Forget buckets that are full again (equivalent to absent); the number removed."""
    return connection.execute(delete(_TABLE).where(_TABLE.c.tat < now)).rowcount or 0


def _read(connection: Connection, rate: RateLimit, now: float) -> BucketState:
    tat = connection.execute(select(_TABLE.c.tat).where(_TABLE.c.bucket == rate.bucket)).scalar()
    tat = max(tat if tat is not None else now, now)
    retry_after = tat + rate.interval * rate.units - rate.period - now
    return BucketState(
        retry_after <= 0, _remaining(rate, tat, now), tat - now, max(retry_after, 0.0)
    )


def _remaining(rate: RateLimit, tat: float, now: float) -> int:
    # The small epsilon keeps float rounding from hiding a whole unit.
    return max(0, math.floor((rate.period - (tat - now)) / rate.interval + 1e-9))
