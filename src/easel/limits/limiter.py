"""Admission: a request is checked against its key's rates and quota before any work is queued.

Every counter lives in the database and is changed by atomic conditional upserts, so the limits
hold across all server processes that share it (see README, "Limits and quotas")."""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection

from easel.db.database import Database
from easel.errors import InsufficientQuotaError, PermissionDeniedError, RateLimitError
from easel.keys.store import ApiKey
from easel.limits import quota, rate_buckets
from easel.limits.rate_buckets import BucketState, RateLimit

QUOTA_MESSAGE = (
    "You exceeded your current quota of {quota} images{per}, please ask the administrator of "
    "this server for a higher quota."
)


@dataclass(frozen=True)
class Admission:
    """What admitting a request reserved, and the headers its response carries."""

    quota_period: str | None
    headers: dict[str, str] = field(default_factory=dict)


def require_model(key: ApiKey, model: str) -> None:
    """403 when the key's policy does not list this model."""
    if not key.policy.allows_model(model):
        allowed = ", ".join(key.policy.models or ())
        raise PermissionDeniedError(
            f"This API key may not use the model `{model}`. Models it may use: {allowed}.",
            param="model",
            code="model_not_allowed",
        )


class Limiter:
    def __init__(
        self,
        database: Database,
        *,
        reservation_ttl_seconds: float = 900.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = database
        self._ttl = reservation_ttl_seconds
        self._clock = clock

    def admit_request(self, key: ApiKey) -> dict[str, str]:
        """Take one request from the key's requests per minute; the x-ratelimit-*-requests
        headers."""
        if key.policy.rpm is None:
            return {}
        rate = RateLimit(f"rpm:{key.id}", key.policy.rpm, 1)
        with self._db.engine.begin() as connection:
            state = rate_buckets.take(connection, rate, self._clock())
        headers = rate_headers("requests", rate, state)
        if not state.allowed:
            raise _rate_error("requests", rate, state, headers, key.id)
        return headers

    def admit_images(
        self, key: ApiKey, user: str | None, images: int, request_id: str
    ) -> Admission:
        """Take the request's images from every rate that applies and reserve them from the
        quota, all or nothing. Raises 429 `rate_limit_exceeded` or `insufficient_quota`."""
        policy = key.policy
        rates = _image_rates(key, user, images)
        if not rates and policy.quota is None:
            return Admission(None)
        now = self._clock()
        with self._db.engine.connect() as connection:
            with connection.begin() as transaction:
                headers, refusal = _take_all(connection, rates, now)
                if refusal is None:
                    period = self._reserve(connection, key, images, request_id, now, headers)
                    return Admission(period, headers)
                transaction.rollback()  # all or nothing: give back what other buckets took
            if refusal.state.retry_after is not None:
                # Its own transaction, as the refused one is rolled back (see rate_buckets).
                with connection.begin():
                    rate_buckets.hold(connection, refusal.rate, now, refusal.state.retry_after)
        raise _rate_error(refusal.kind, refusal.rate, refusal.state, headers, key.id)

    def sweep(self) -> None:
        """Drop expired reservations and full buckets (run now and then by the server)."""
        with self._db.engine.begin() as connection:
            now = self._clock()
            quota.sweep(connection, now)
            rate_buckets.sweep(connection, now)

    def _reserve(
        self,
        connection: Connection,
        key: ApiKey,
        images: int,
        request_id: str,
        now: float,
        headers: dict[str, str],
    ) -> str | None:
        policy = key.policy
        if policy.quota is None:
            return None
        when = datetime.fromtimestamp(now, UTC)
        period = quota.period_of(policy.quota_period, when)
        state = quota.reserve(
            connection,
            request_id=request_id,
            key_id=key.id,
            period=period,
            quota=policy.quota,
            images=images,
            now=now,
            ttl_seconds=self._ttl,
        )
        if not state.allowed:
            per = "" if policy.quota_period == "total" else f" per {policy.quota_period}"
            refusal = {**headers, "x-should-retry": "false"}
            reset = _period_reset_seconds(policy.quota_period, when)
            if reset is not None:
                refusal["Retry-After"] = str(math.ceil(reset))
            raise InsufficientQuotaError(
                QUOTA_MESSAGE.format(quota=policy.quota, per=per),
                code="insufficient_quota",
                headers=refusal,
            )
        return period


@dataclass(frozen=True)
class _Refusal:
    kind: str
    rate: RateLimit
    state: BucketState


def _take_all(
    connection: Connection, rates: list[tuple[str, RateLimit]], now: float
) -> tuple[dict[str, str], _Refusal | None]:
    """Take from each rate's bucket in turn up to the first that refuses; the images headers and
    that refusal, if any."""
    headers: dict[str, str] = {}
    for kind, rate in rates:
        state = rate_buckets.take(connection, rate, now)
        if kind == "images":
            headers = rate_headers("images", rate, state)
        if not state.allowed:
            return headers, _Refusal(kind, rate, state)
    return headers, None


def _image_rates(key: ApiKey, user: str | None, images: int) -> list[tuple[str, RateLimit]]:
    policy = key.policy
    rates: list[tuple[str, RateLimit]] = []
    if user is not None:
        user_tag = hashlib.sha256(user.encode()).hexdigest()[:32]
        if policy.user_rpm is not None:
            rates.append(
                ("user requests", RateLimit(f"user-rpm:{key.id}:{user_tag}", policy.user_rpm, 1))
            )
        if policy.user_ipm is not None:
            rates.append(
                ("user images", RateLimit(f"user-ipm:{key.id}:{user_tag}", policy.user_ipm, images))
            )
    if policy.ipm is not None:
        rates.append(("images", RateLimit(f"ipm:{key.id}", policy.ipm, images)))
    return rates


def rate_headers(kind: str, rate: RateLimit, state: BucketState) -> dict[str, str]:
    """OpenAI's x-ratelimit-{limit,remaining,reset}-<kind> headers."""
    return {
        f"x-ratelimit-limit-{kind}": str(rate.limit),
        f"x-ratelimit-remaining-{kind}": str(state.remaining),
        f"x-ratelimit-reset-{kind}": format_duration(state.reset_seconds),
    }


def format_duration(seconds: float) -> str:
    """OpenAI's spelling of a reset time: `850ms`, `1.5s`, `1m30s`."""
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    if seconds < 60:
        return f"{math.ceil(seconds * 10) / 10:g}s"
    minutes, rest = divmod(math.ceil(seconds), 60)
    return f"{minutes}m{rest}s"


def _rate_error(
    kind: str, rate: RateLimit, state: BucketState, headers: dict[str, str], key_id: str
) -> RateLimitError:
    per_minute = f"{kind} per minute"
    if state.retry_after is None:
        # More images in one request than the rate allows in a whole minute: waiting cannot help.
        return RateLimitError(
            f"Rate limit exceeded for {per_minute} on key {key_id}: this request needs "
            f"{rate.units}, the limit is {rate.limit}/1min. Ask for fewer images per request.",
            code="rate_limit_exceeded",
            headers={**headers, "x-should-retry": "false", "Retry-After": str(int(rate.period))},
        )
    wait = max(state.retry_after, 0.001)
    return RateLimitError(
        f"Rate limit exceeded for {per_minute} on key {key_id}. Limit: {rate.limit}/1min. "
        f"Please try again in {format_duration(wait)}.",
        code="rate_limit_exceeded",
        headers={
            **headers,
            "Retry-After": str(math.ceil(wait)),
            "retry-after-ms": str(math.ceil(wait * 1000)),
        },
    )


def _period_reset_seconds(quota_period: str, when: datetime) -> float | None:
    """Seconds until a day or month quota starts afresh; None for a total quota, which never
    does."""
    if quota_period == "day":
        start = when.replace(hour=0, minute=0, second=0, microsecond=0)
        return (start + timedelta(days=1) - when).total_seconds()
    if quota_period == "month":
        start = when.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        following = (start + timedelta(days=32)).replace(day=1)
        return (following - when).total_seconds()
    return None
