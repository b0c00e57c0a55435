"""API keys: `sk-` secrets from a CSPRNG, stored only as SHA-256 digests, checked in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from easel.storage.database import ApiKeyRow, Database, utcnow

KEY_PREFIX = "sk-"


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    display_hint: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def _digest(secret: str) -> str:
    # Keys carry 256 random bits, so a plain digest cannot be brute-forced back to the key.
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def mask_key(secret: str) -> str:
    """OpenAI's way of naming a wrong key: its start, asterisks, its last four characters."""
    if len(secret) <= 12:
        return "*" * len(secret)
    return f"{secret[:5]}{'*' * min(len(secret) - 9, 16)}{secret[-4:]}"


def _to_key(row: ApiKeyRow) -> ApiKey:
    return ApiKey(row.id, row.name, row.display_hint, row.created_at, row.revoked_at)


class KeyStore:
    """Create, list, revoke and verify API keys."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def create(self, name: str = "") -> tuple[ApiKey, str]:
        """A new key and its secret; the secret is never stored or shown again."""
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        row = ApiKeyRow(
            id="key_" + secrets.token_hex(8),
            name=name,
            secret_hash=_digest(secret),
            display_hint=mask_key(secret),
            created_at=utcnow(),
        )
        with self._db.session.begin() as session:
            session.add(row)
        return _to_key(row), secret

    def list(self) -> list[ApiKey]:
        with self._db.session() as session:
            rows = session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.created_at)).all()
            return [_to_key(row) for row in rows]

    def revoke(self, key_id: str) -> ApiKey | None:
        """Revoke by id; None when no such key exists."""
        with self._db.session.begin() as session:
            row = session.get(ApiKeyRow, key_id)
            if row is None:
                return None
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            return _to_key(row)

    def verify(self, secret: str) -> ApiKey | None:
        """The active key with this secret, or None."""
        digest = _digest(secret)
        with self._db.session() as session:
            row = session.scalars(select(ApiKeyRow).where(ApiKeyRow.secret_hash == digest)).first()
            if row is None or not hmac.compare_digest(row.secret_hash, digest):
                return None
            key = _to_key(row)
        return key if key.active else None

    def has_active_keys(self) -> bool:
        return any(key.active for key in self.list())
