"""API keys: `sk-` secrets from a CSPRNG, stored only as SHA-256 digests, checked in constant time,
each with its policy (limits, quota, models, expiry, disabled)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from easel.db.database import ApiKeyRow, Database, utcnow
from easel.limits.policy import KeyPolicy

KEY_PREFIX = "sk-"


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    display_hint: str
    created_at: datetime
    revoked_at: datetime | None
    policy: KeyPolicy

    def status(self, now: datetime | None = None) -> str:
        """revoked, disabled, expired or active."""
        if self.revoked_at is not None:
            return "revoked"
        if self.policy.disabled:
            return "disabled"
        if self.policy.expired(now or utcnow()):
            return "expired"
        return "active"

    def as_dict(self) -> dict[str, Any]:
        """The key as the admin API shows it: never its secret."""
        return {
            "id": self.id,
            "object": "api_key",
            "name": self.name,
            "display_hint": self.display_hint,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "status": self.status(),
            **self.policy.as_dict(),
        }


def _digest(secret: str) -> str:
    # Keys carry 256 random bits, so a plain digest cannot be brute-forced back to the key.
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def mask_key(secret: str) -> str:
    """OpenAI's way of naming a wrong key: its start, asterisks, its last four characters."""
    if len(secret) <= 12:
        return "*" * len(secret)
    return f"{secret[:5]}{'*' * min(len(secret) - 9, 16)}{secret[-4:]}"


def _aware(value: datetime | None) -> datetime | None:
    # SQLite returns naive datetimes; every time Easel stores is UTC.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _to_policy(row: ApiKeyRow) -> KeyPolicy:
    return KeyPolicy(
        rpm=row.rpm,
        ipm=row.ipm,
        user_rpm=row.user_rpm,
        user_ipm=row.user_ipm,
        quota=row.quota,
        quota_period=row.quota_period or "total",
        models=tuple(row.models.split(",")) if row.models else None,
        expires_at=_aware(row.expires_at),
        disabled=bool(row.disabled),
    )


def _to_key(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        row.id,
        row.name,
        row.display_hint,
        _aware(row.created_at) or utcnow(),
        _aware(row.revoked_at),
        _to_policy(row),
    )


def _apply_policy(row: ApiKeyRow, policy: KeyPolicy) -> None:
    row.rpm = policy.rpm
    row.ipm = policy.ipm
    row.user_rpm = policy.user_rpm
    row.user_ipm = policy.user_ipm
    row.quota = policy.quota
    row.quota_period = policy.quota_period
    row.models = ",".join(policy.models) if policy.models is not None else None
    # SQLite keeps a datetime's wall time and drops its offset: store the instant in UTC.
    row.expires_at = policy.expires_at.astimezone(UTC) if policy.expires_at else None
    row.disabled = policy.disabled


class KeyStore:
    """Create, list, change, revoke and verify API keys."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def create(self, name: str = "", policy: KeyPolicy | None = None) -> tuple[ApiKey, str]:
        """A new key and its secret; the secret is never stored or shown again."""
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        row = ApiKeyRow(
            id="key_" + secrets.token_hex(8),
            name=name,
            secret_hash=_digest(secret),
            display_hint=mask_key(secret),
            created_at=utcnow(),
        )
        _apply_policy(row, policy or KeyPolicy())
        with self._db.session.begin() as session:
            session.add(row)
        return _to_key(row), secret

    def list(self) -> list[ApiKey]:
        with self._db.session() as session:
            rows = session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.created_at)).all()
            return [_to_key(row) for row in rows]

    def get(self, key_id: str) -> ApiKey | None:
        with self._db.session() as session:
            row = session.get(ApiKeyRow, key_id)
            return _to_key(row) if row is not None else None

    def update(
        self, key_id: str, changes: dict[str, Any], name: str | None = None
    ) -> ApiKey | None:
        """Change some policy fields (and the name); None when no such key exists.
        Raises PolicyError, changing nothing, when the result is not a valid policy."""
        with self._db.session.begin() as session:
            row = session.get(ApiKeyRow, key_id, with_for_update=True)
            if row is None:
                return None
            _apply_policy(row, _to_policy(row).changed(changes))
            if name is not None:
                row.name = name
            return _to_key(row)

    def revoke(self, key_id: str) -> ApiKey | None:
        """Revoke by id; None when no such key exists."""
        with self._db.session.begin() as session:
            row = session.get(ApiKeyRow, key_id)
            if row is None:
                return None
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            return _to_key(row)

    def find(self, secret: str) -> ApiKey | None:
        """The key (in any state) with this secret, or None."""
        digest = _digest(secret)
        with self._db.session() as session:
            row = session.scalars(select(ApiKeyRow).where(ApiKeyRow.secret_hash == digest)).first()
            if row is None or not hmac.compare_digest(row.secret_hash, digest):
                return None
            return _to_key(row)

    def verify(self, secret: str) -> ApiKey | None:
        """The usable key with this secret: not revoked, disabled or expired; else None."""
        key = self.find(secret)
        return key if key is not None and key.status() == "active" else None

    def has_active_keys(self) -> bool:
        return any(key.status() == "active" for key in self.list())
