"""Storage and limit logic against real SQLite and a real PostgreSQL server: migrations, atomic rate
buckets and quota reservations under concurrency, idempotent usage records, key policies."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text

from easel.db.database import Base, Database, normalise_url
from easel.db.migrations import current_revision, head_revision, upgrade
from easel.errors import InsufficientQuotaError, RateLimitError
from easel.keys.store import ApiKey, KeyStore
from easel.limits.limiter import Limiter, format_duration
from easel.limits.policy import KeyPolicy, PolicyError, parse_expiry
from easel.limits.rate_buckets import HOLD_GRACE_SECONDS
from easel.usage.store import UsageRecord, UsageStore
from tests.postgres import PostgresCluster
from tests.server import easel


class Clock:
    """Limits read time through an injectable clock; tests move it instead of sleeping."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


REMAINING_IMAGES = "x-ratelimit-remaining-images"


def present(value: ApiKey | None) -> ApiKey:
    assert value is not None
    return value


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'easel.db'}"
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    url = cluster.create_database()
    yield url
    cluster.drop_database(url)


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    yield db
    db.close()


def test_migrations_build_the_models_schema_and_are_idempotent(database: Database) -> None:
    assert current_revision(database.engine) == head_revision()
    with database.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    assert database.upgrade() == []


def test_a_database_from_before_migrations_is_adopted_with_its_keys(database_url: str) -> None:
    engine = create_engine(normalise_url(database_url))
    with engine.begin() as connection:  # the first release's schema, made by create_all
        connection.execute(
            text(
                "CREATE TABLE api_keys (id VARCHAR(32) PRIMARY KEY, name VARCHAR(200) NOT NULL, "
                "secret_hash VARCHAR(64) NOT NULL UNIQUE, display_hint VARCHAR(32) NOT NULL, "
                "created_at TIMESTAMP WITH TIME ZONE NOT NULL, revoked_at TIMESTAMP WITH TIME ZONE)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO api_keys VALUES ('key_old', 'old', :digest, 'sk-ol***', "
                "CURRENT_TIMESTAMP, NULL)"
            ),
            {"digest": "0" * 64},
        )
    engine.dispose()
    database = Database(database_url)
    try:
        assert current_revision(database.engine) == head_revision()
        old = KeyStore(database).get("key_old")
        assert old is not None and old.status() == "active" and old.policy == KeyPolicy()
    finally:
        database.close()


def test_request_rate_counts_down_refuses_and_refills(database: Database) -> None:
    clock = Clock()
    key, _ = KeyStore(database).create("r", KeyPolicy(rpm=3))
    limiter = Limiter(database, clock=clock)
    remaining = [limiter.admit_request(key)["x-ratelimit-remaining-requests"] for _ in range(3)]
    assert remaining == ["2", "1", "0"]
    with pytest.raises(RateLimitError) as refused:
        limiter.admit_request(key)
    assert refused.value.code == "rate_limit_exceeded"
    assert refused.value.headers["Retry-After"] == "20"  # one request's worth: 60 s / 3
    assert refused.value.headers["x-ratelimit-limit-requests"] == "3"
    clock.now += 20
    assert limiter.admit_request(key)["x-ratelimit-remaining-requests"] == "0"
    clock.now += 60
    assert limiter.admit_request(key)["x-ratelimit-remaining-requests"] == "2"


def test_image_rate_takes_n_and_refuses_a_request_that_can_never_fit(database: Database) -> None:
    clock = Clock()
    key, _ = KeyStore(database).create("i", KeyPolicy(ipm=5))
    limiter = Limiter(database, clock=clock)
    assert limiter.admit_images(key, None, 3, "req_1").headers[REMAINING_IMAGES] == "2"
    with pytest.raises(RateLimitError) as never:
        limiter.admit_images(key, None, 6, "req_2")
    assert never.value.headers["x-should-retry"] == "false"
    # A refused request takes nothing: the two images left are still there.
    assert limiter.admit_images(key, None, 2, "req_3").headers[REMAINING_IMAGES] == "0"
    with pytest.raises(RateLimitError) as refused:
        limiter.admit_images(key, None, 3, "req_4")
    assert "x-should-retry" not in refused.value.headers


def test_a_multi_image_request_retrying_at_retry_after_gets_in_among_single_ones(
    database: Database,
) -> None:
    clock = Clock()
    key, _ = KeyStore(database).create("fair", KeyPolicy(ipm=10))  # an image back every 6 s
    limiter = Limiter(database, clock=clock)
    start = clock.now
    # Single-image clients send a request every second, more than the rate refills: without a
    # fair rule they take every image as it comes back and the 4-image request never fits.
    next_single, next_multi = start, start + 10.5
    singles = multi_attempts = 0
    admitted_at: float | None = None
    while admitted_at is None and clock.now < start + 600:
        clock.now = min(next_single, next_multi)
        if clock.now == next_single:
            next_single += 1
            try:
                limiter.admit_images(key, None, 1, f"req_single_{clock.now}")
                singles += 1
            except RateLimitError:
                pass
        else:
            multi_attempts += 1
            try:
                limiter.admit_images(key, None, 4, f"req_multi_{multi_attempts}")
                admitted_at = clock.now
            except RateLimitError as refused:
                # What the official SDKs do: wait retry-after-ms, then send the request again.
                next_multi = clock.now + int(refused.headers["retry-after-ms"]) / 1000
    assert admitted_at is not None, f"still refused after {multi_attempts} attempts"
    assert multi_attempts == 2  # refused once, admitted on its first retry
    assert singles == 11  # ten from the full bucket, one as it came back, then none: held
    clock.now = admitted_at + 6.01
    limiter.admit_images(key, None, 1, "req_after")  # one image back: the retry ended the hold


def test_a_hold_lapses_when_its_request_never_comes_back(database: Database) -> None:
    clock = Clock()
    key, _ = KeyStore(database).create("lapse", KeyPolicy(ipm=10))
    limiter = Limiter(database, clock=clock)
    for i in range(10):
        limiter.admit_images(key, None, 1, f"req_{i}")
    with pytest.raises(RateLimitError) as refused:
        limiter.admit_images(key, None, 4, "req_four")
    assert refused.value.headers["retry-after-ms"] == "24000"  # four images back, 6 s each
    hold_ends = clock.now + 24 + HOLD_GRACE_SECONDS
    # Just before the hold lapses 5 images are free: single images get only the one above it.
    clock.now = hold_ends - 0.001
    assert limiter.admit_images(key, None, 1, "req_above").headers[REMAINING_IMAGES] == "0"
    with pytest.raises(RateLimitError) as held:
        limiter.admit_images(key, None, 1, "req_held")
    assert held.value.headers["retry-after-ms"] == "1"  # when the hold lapses
    # The four-image client never came back: once the hold lapses, every free image is anyone's.
    clock.now = hold_ends + 0.001
    remaining = [
        limiter.admit_images(key, None, 1, f"req_free_{i}").headers[REMAINING_IMAGES]
        for i in range(4)
    ]
    assert remaining == ["3", "2", "1", "0"]


def test_a_database_at_0002_upgrades_in_place_keeping_its_buckets(database_url: str) -> None:
    clock = Clock()
    old = Database(database_url, migrate=False)
    upgrade(old.engine, "0002")
    key, _ = KeyStore(old).create("old", KeyPolicy(ipm=10))
    with old.engine.begin() as connection:  # the key used its whole minute before the upgrade
        connection.execute(
            text("INSERT INTO rate_buckets (bucket, tat) VALUES (:bucket, :tat)"),
            {"bucket": f"ipm:{key.id}", "tat": clock.now + 60},
        )
    old.close()
    database = Database(database_url)
    try:
        assert current_revision(database.engine) == head_revision()
        limiter = Limiter(database, clock=clock)
        with pytest.raises(RateLimitError) as refused:
            limiter.admit_images(key, None, 2, "req_two")
        assert refused.value.headers["retry-after-ms"] == "12000"
        clock.now += 6
        with pytest.raises(RateLimitError):  # the one image back is held for the retry
            limiter.admit_images(key, None, 1, "req_one")
        clock.now += 6
        limiter.admit_images(key, None, 2, "req_two_again")
    finally:
        database.close()


def test_user_limits_are_separate_within_a_key_and_all_or_nothing(database: Database) -> None:
    clock = Clock()
    key, _ = KeyStore(database).create("u", KeyPolicy(user_rpm=1, ipm=10))
    limiter = Limiter(database, clock=clock)
    limiter.admit_images(key, "alice", 1, "req_a1")
    with pytest.raises(RateLimitError):
        limiter.admit_images(key, "alice", 1, "req_a2")
    limiter.admit_images(key, "bob", 1, "req_b1")
    # alice's refusals did not take from the key's images per minute: 10 - 2 left 8.
    headers = limiter.admit_images(key, None, 1, "req_n1").headers
    assert headers["x-ratelimit-remaining-images"] == "7"


def test_quota_reserves_in_flight_images_and_counts_only_delivered_ones(database: Database) -> None:
    clock = Clock()
    keys = KeyStore(database)
    usage = UsageStore(database)
    key, _ = keys.create("q", KeyPolicy(quota=5, quota_period="day"))
    limiter = Limiter(database, clock=clock, reservation_ttl_seconds=60)
    first = limiter.admit_images(key, None, 3, "req_1")
    with pytest.raises(InsufficientQuotaError) as refused:
        limiter.admit_images(key, None, 3, "req_2")  # 3 in flight + 3 > 5
    assert refused.value.headers["x-should-retry"] == "false"
    assert (
        refused.value.error_type == "insufficient_quota"
        and refused.value.code == "insufficient_quota"
    )
    assert 0 < int(refused.value.headers["Retry-After"]) <= 86400  # the next UTC day
    # The first request fails after one of its three images: only that one counts.
    usage.write([_record("req_1", key.id, n=3, delivered=1, period=first.quota_period)])
    limiter.admit_images(key, None, 3, "req_3")  # 1 used + 3 in flight <= 5
    with pytest.raises(InsufficientQuotaError):
        limiter.admit_images(key, None, 2, "req_4")
    # A process that died holding req_3's reservation: it stops counting once it expires.
    clock.now += 61
    limiter.sweep()
    limiter.admit_images(key, None, 4, "req_5")


def test_usage_records_are_stored_and_settled_once(database: Database) -> None:
    keys = KeyStore(database)
    usage = UsageStore(database)
    key, _ = keys.create("w", KeyPolicy(quota=10))
    limiter = Limiter(database)
    admission = limiter.admit_images(key, "u1", 2, "req_x")
    record = _record("req_x", key.id, n=2, delivered=2, period=admission.quota_period)
    assert usage.write([record]) == 1
    assert usage.write([record, record]) == 0  # a retried batch changes nothing
    [summary] = usage.summary()
    assert (summary.requests, summary.images_delivered, summary.images_requested) == (1, 2, 2)
    limiter.admit_images(key, None, 8, "req_y")  # exactly 10 - 2 left: not counted twice
    with pytest.raises(InsufficientQuotaError):
        limiter.admit_images(key, None, 1, "req_z")


@pytest.mark.parametrize("kind", ["rate", "quota"])
def test_concurrent_admissions_never_exceed_the_limit(database: Database, kind: str) -> None:
    clock = Clock()  # frozen: no refill while the threads run, so the limit is exact
    policy = KeyPolicy(ipm=20) if kind == "rate" else KeyPolicy(quota=20)
    key, _ = KeyStore(database).create("c", policy)
    limiter = Limiter(database, clock=clock)
    admitted: list[str] = []
    lock = threading.Lock()

    def hammer(worker: int) -> None:
        for attempt in range(8):
            request_id = f"req_{worker}_{attempt}"
            try:
                limiter.admit_images(key, None, 1, request_id)
            except (RateLimitError, InsufficientQuotaError):
                continue
            with lock:
                admitted.append(request_id)

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) == 20


def test_key_policy_round_trips_and_refuses_nonsense(database: Database) -> None:
    keys = KeyStore(database)
    expires = datetime(2030, 1, 2, 3, 4, tzinfo=UTC)
    policy = KeyPolicy(
        rpm=1,
        ipm=2,
        user_rpm=3,
        user_ipm=4,
        quota=5,
        quota_period="month",
        models=("dall-e-2", "dall-e-3"),
        expires_at=expires,
    )
    key, secret = keys.create("p", policy)
    assert present(keys.get(key.id)).policy == policy
    updated = keys.update(key.id, {"rpm": None, "disabled": True}, name="renamed")
    assert updated is not None and updated.policy.rpm is None and updated.name == "renamed"
    assert keys.verify(secret) is None and present(keys.find(secret)).status() == "disabled"
    with pytest.raises(PolicyError):
        keys.update(key.id, {"quota_period": "week"})
    with pytest.raises(PolicyError):
        keys.update(key.id, {"ipm": 0})
    assert (
        present(keys.get(key.id)).policy.quota_period == "month"
    )  # the refused change left nothing behind
    keys.update(key.id, {"disabled": False, "expires_at": datetime.now(UTC) - timedelta(seconds=1)})
    assert present(keys.find(secret)).status() == "expired"


def test_an_expiry_with_a_zone_offset_means_that_instant(database: Database) -> None:
    keys = KeyStore(database)
    instant = datetime(2030, 1, 2, 3, 4, tzinfo=UTC)
    local = instant.astimezone(timezone(timedelta(hours=5)))  # 08:04+05:00
    key, _ = keys.create("offset", KeyPolicy(expires_at=local))
    stored = present(keys.get(key.id))
    assert stored.policy.expires_at == instant
    assert stored.status(instant - timedelta(minutes=1)) == "active"
    assert stored.status(instant) == "expired"


def test_the_cli_stores_an_offset_expiry_as_utc(tmp_path: Path) -> None:
    # An hour ago, written in UTC+05:00: taken as UTC, it would be four hours ahead and active.
    an_hour_ago = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    written = an_hour_ago.astimezone(timezone(timedelta(hours=5))).isoformat()
    easel("keys", "create", "--name", "offset", "--expires", written, data_dir=tmp_path)
    listed = easel("keys", "list", data_dir=tmp_path).stdout
    assert "expired" in listed and an_hour_ago.strftime("%Y-%m-%d %H:%M") in listed


def test_expiry_and_duration_formats() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_expiry("30d", now) == now + timedelta(days=30)
    assert parse_expiry("2027-01-31") == datetime(2027, 1, 31, tzinfo=UTC)
    assert parse_expiry("never") is None
    with pytest.raises(PolicyError):
        parse_expiry("tomorrow")
    assert [format_duration(s) for s in (0.0123, 1.5, 20, 90)] == ["13ms", "1.5s", "20s", "1m30s"]


def _record(
    request_id: str, key_id: str, *, n: int, delivered: int, period: str | None
) -> UsageRecord:
    return UsageRecord(
        request_id=request_id,
        created_at=datetime.now(UTC),
        key_id=key_id,
        user=None,
        model="dall-e-2",
        size="256x256",
        quality="standard",
        n=n,
        images_delivered=delivered,
        queued_ms=1,
        generating_ms=2,
        status=200 if delivered == n else 500,
        quota_period=period,
    )
