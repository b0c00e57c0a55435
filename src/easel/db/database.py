"""The SQL database (embedded SQLite by default, PostgreSQL or any SQLAlchemy URL otherwise)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Connection,
    DateTime,
    Engine,
    Float,
    Integer,
    String,
    Table,
    Text,
    create_engine,
    event,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    # Only a SHA-256 digest of the secret is kept; the secret itself is shown once, at creation.
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    display_hint: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    rpm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ipm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    user_rpm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    user_ipm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    quota: Mapped[int | None] = mapped_column(Integer, nullable=True)
    quota_period: Mapped[str] = mapped_column(String(8), default="total")
    # Comma-separated model names; NULL means every model of the catalog.
    models: Mapped[str | None] = mapped_column(Text, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)


class RateBucketRow(Base):
    """One GCRA bucket: `tat` is the theoretical arrival time (Unix seconds) of the next unit;
    `hold_units` are kept back from smaller requests until `hold_until` for a refused larger one."""

    __tablename__ = "rate_buckets"

    bucket: Mapped[str] = mapped_column(String(300), primary_key=True)
    tat: Mapped[float] = mapped_column(Float)
    hold_units: Mapped[int] = mapped_column(Integer, server_default="0")
    hold_until: Mapped[float] = mapped_column(Float, server_default="0")


class QuotaUsageRow(Base):
    """Images delivered to a key within one quota period ('total', '2026-11-24' or '2026-11')."""

    __tablename__ = "quota_usage"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    period: Mapped[str] = mapped_column(String(10), primary_key=True)
    used: Mapped[int] = mapped_column(Integer, default=0)


class QuotaReservationRow(Base):
    """Images promised to a request in flight; they count against the quota until it settles."""

    __tablename__ = "quota_reservations"

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32), index=True)
    period: Mapped[str] = mapped_column(String(10))
    images: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[float] = mapped_column(Float)


class UsageRow(Base):
    """One record per generation request, keyed by its request id so it is written once."""

    __tablename__ = "usage_records"

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    day: Mapped[str] = mapped_column(String(10), index=True)
    key_id: Mapped[str] = mapped_column(String(32), index=True)
    user: Mapped[str | None] = mapped_column(String(256), nullable=True)
    model: Mapped[str] = mapped_column(String(200))
    size: Mapped[str] = mapped_column(String(20))
    quality: Mapped[str] = mapped_column(String(20))
    n: Mapped[int] = mapped_column(Integer)
    images_delivered: Mapped[int] = mapped_column(Integer)
    queued_ms: Mapped[int] = mapped_column(Integer)
    generating_ms: Mapped[int] = mapped_column(Integer)
    status: Mapped[int] = mapped_column(Integer)
    # The `usage` the response reported (0 where it reported none: dall-e names, failures).
    input_text_tokens: Mapped[int] = mapped_column(Integer, default=0)
    input_image_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    # generations, edits or variations: the route the request came in by.
    endpoint: Mapped[str] = mapped_column(String(16), server_default="generations")


class Database:
    """An engine and session factory; the schema is brought up to date by the Alembic migrations."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.url = url
        self.engine: Engine = create_engine(normalise_url(url), pool_pre_ping=True)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        if migrate:
            self.upgrade()
        self.session = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def upgrade(self) -> list[str]:
        """Apply pending migrations; the revisions applied, oldest first."""
        # Imported here: the migrations import this module's models.
        from easel.db.migrations import upgrade

        return upgrade(self.engine)

    def ping(self) -> bool:
        """Whether the database answers a trivial query right now."""
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception:  # any driver error means "not reachable" to a readiness probe
            return False
        return True

    def close(self) -> None:
        self.engine.dispose()


def normalise_url(url: str) -> str:
    """`postgresql://` means psycopg 3, the driver Easel installs (SQLAlchemy would pick
    psycopg2)."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    # WAL lets the CLI write keys while a server reads them; busy_timeout waits instead of failing.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def upsert(connection: Connection, table: Table) -> Any:
    """INSERT ... ON CONFLICT for the connection's dialect (SQLite and PostgreSQL spell it
    alike)."""
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table)
    if connection.dialect.name == "sqlite":
        return sqlite.insert(table)
    raise RuntimeError(f"Easel needs SQLite or PostgreSQL, not {connection.dialect.name}")
