"""Rate limits as GCRA buckets in the database, taken with one atomic conditional upsert each, so
every server process sharing the database sees the same counts.

Fairness: a request for several units that is refused leaves a hold of its units on the bucket
until its Retry-After plus `HOLD_GRACE_SECONDS`. While the hold lasts, smaller requests may only
take the capacity above it, so single units trickling back cannot starve the larger request; the
next request at least as large takes the held units and ends the hold."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Float,
    Table,
    and_,
    case,
    delete,
    literal,
    select,
)

from easel.db.database import RateBucketRow, upsert

# Room for a client that retries a little after its Retry-After (rounding, latency, jitter).
HOLD_GRACE_SECONDS = 10.0

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
    remaining: int  # units a request of this size could still take now
    reset_seconds: float  # until the bucket is full again
    retry_after: float | None  # when refused: seconds until the units fit; None if they never will


def take(connection: Connection, rate: RateLimit, now: float) -> BucketState:
    """Take `rate.units` from the bucket if they fit; the caller's transaction makes several
    buckets all-or-nothing (roll back when one refuses)."""
    if rate.units > rate.limit:
        state = _refused(connection, rate, now)
        return BucketState(False, state.remaining, state.reset_seconds, None)
    columns = _TABLE.c
    cost = rate.interval * rate.units
    start = case((columns.tat > now, columns.tat), else_=literal(now, Float))
    held = _held_back(rate, now)
    statement = (
        upsert(connection, _TABLE)
        .values(bucket=rate.bucket, tat=now + cost, hold_units=0, hold_until=0.0)
        .on_conflict_do_update(
            index_elements=[columns.bucket],
            # A request at least as large as the hold takes its units; an expired hold is cleared.
            set_={
                "tat": start + cost,
                "hold_units": held,
                "hold_until": case((held > 0, columns.hold_until), else_=0.0),
            },
            where=start + cost + held * rate.interval - now <= rate.period,
        )
        .returning(columns.tat, columns.hold_units)
    )
    row = connection.execute(statement).one_or_none()
    if row is None:
        return _refused(connection, rate, now)
    tat, held_units = row
    return BucketState(True, _remaining(rate, tat, held_units, now), max(tat - now, 0.0), None)


def hold(connection: Connection, rate: RateLimit, now: float, retry_after: float) -> None:
    """Keep the refused request's units back from smaller requests until it retries, unless a
    larger hold is already live. Call it outside the refused transaction, which rolls back."""
    if rate.units <= 1:
        return  # a hold of one unit holds nothing back: no request is smaller
    columns = _TABLE.c
    until = now + retry_after + HOLD_GRACE_SECONDS
    statement = (
        upsert(connection, _TABLE)
        .values(bucket=rate.bucket, tat=now, hold_units=rate.units, hold_until=until)
        .on_conflict_do_update(
            index_elements=[columns.bucket],
            set_={"hold_units": rate.units, "hold_until": until},
            where=_held_back(rate, now) == 0,
        )
    )
    connection.execute(statement)


def sweep(connection: Connection, now: float) -> int:
    """Forget buckets that are full again and hold nothing (equivalent to absent); the number
    removed."""
    columns = _TABLE.c
    statement = delete(_TABLE).where(columns.tat < now, columns.hold_until < now)
    return connection.execute(statement).rowcount or 0


def _held_back(rate: RateLimit, now: float) -> ColumnElement[int]:
    """The units this request must leave be: those of a live hold larger than the request, else 0
    (a request at least as large is the one the hold waits for)."""
    columns = _TABLE.c
    live_and_larger = and_(columns.hold_until > now, columns.hold_units > rate.units)
    return case((live_and_larger, columns.hold_units), else_=0)


def _refused(connection: Connection, rate: RateLimit, now: float) -> BucketState:
    columns = _TABLE.c
    statement = select(columns.tat, _held_back(rate, now), columns.hold_until).where(
        columns.bucket == rate.bucket
    )
    row = connection.execute(statement).one_or_none()
    tat, held, hold_until = row if row is not None else (now, 0, now)
    tat = max(tat, now)
    fits_in = tat + rate.interval * rate.units - rate.period - now
    # Held units come back when their request takes them (later by their cost) or when the hold
    # lapses, whichever is first.
    retry_after = min(fits_in + held * rate.interval, max(fits_in, hold_until - now))
    return BucketState(False, _remaining(rate, tat, held, now), tat - now, max(retry_after, 0.0))


def _remaining(rate: RateLimit, tat: float, held: int, now: float) -> int:
    # The small epsilon keeps float rounding from hiding a whole unit.
    free = math.floor((rate.period - (tat - now)) / rate.interval + 1e-9)
    return max(0, free - held)
