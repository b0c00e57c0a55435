"""Server settings: one documented list, read from flags and EASEL_* environment variables."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

MIN_SECRET_LENGTH = 32
# An admin key is a password for every key and quota: long and not a repeated pattern.
MIN_ADMIN_KEY_DISTINCT_CHARACTERS = 12
LOG_FORMATS = ("json", "text")


def default_data_dir() -> Path:
    """EASEL_DATA_DIR, else the per-user data directory (e.g. ~/.local/share/easel)."""
    configured = os.environ.get("EASEL_DATA_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path(platformdirs.user_data_dir("easel", appauthor=False))


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def _env_flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    return value in ("1", "true", "yes", "on")


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


@dataclass
class Settings:
    """Everything a server instance is configured with. Built once in the CLI, never at import."""

    data_dir: Path = field(default_factory=default_data_dir)
    host: str = field(default_factory=lambda: os.environ.get("EASEL_HOST", "127.0.0.1"))
    port: int = field(default_factory=lambda: _env_int("EASEL_PORT", 8000))
    public_base_url: str | None = field(
        default_factory=lambda: os.environ.get("EASEL_PUBLIC_BASE_URL") or None
    )
    url_ttl_seconds: int = field(default_factory=lambda: _env_int("EASEL_URL_TTL_SECONDS", 3600))
    sweep_interval_seconds: int = field(
        default_factory=lambda: _env_int("EASEL_SWEEP_INTERVAL_SECONDS", 60)
    )
    max_body_bytes: int = field(
        default_factory=lambda: _env_int("EASEL_MAX_BODY_BYTES", 1024 * 1024)
    )
    database_url: str | None = field(
        default_factory=lambda: os.environ.get("EASEL_DATABASE_URL") or None
    )
    url_secret: str | None = field(default_factory=lambda: os.environ.get("EASEL_URL_SECRET"))
    admin_key: str | None = field(default_factory=lambda: os.environ.get("EASEL_ADMIN_KEY") or None)
    log_format: str = field(default_factory=lambda: os.environ.get("EASEL_LOG_FORMAT", "json"))
    log_prompts: bool = field(default_factory=lambda: _env_flag("EASEL_LOG_PROMPTS"))
    # A reservation outlives its request only when the process died; then it frees after this long.
    reservation_ttl_seconds: int = field(
        default_factory=lambda: _env_int("EASEL_RESERVATION_TTL_SECONDS", 900)
    )
    # None: <data-dir>/images. `s3://bucket/prefix`: an S3-compatible bucket. Else a directory.
    storage: str | None = field(default_factory=lambda: os.environ.get("EASEL_STORAGE") or None)
    # Per model: images waiting before new requests get 429, and the pipeline-call budget.
    queue_images: int = field(default_factory=lambda: _env_int("EASEL_QUEUE_IMAGES", 64))
    batch_images: int = field(default_factory=lambda: _env_int("EASEL_BATCH_IMAGES", 8))
    batch_pixels: int = field(
        default_factory=lambda: _env_int("EASEL_BATCH_PIXELS", 8 * 1024 * 1024)
    )
    batch_wait_ms: float = field(default_factory=lambda: _env_float("EASEL_BATCH_WAIT_MS", 5.0))
    # Within the budgets, limit batches to the size measured fastest (engine/batch_sizing.py).
    adaptive_batch_size: bool = field(
        default_factory=lambda: _env_flag("EASEL_ADAPTIVE_BATCH_SIZE", default=True)
    )
    # 0 means no deadline.
    deadline_seconds: float = field(
        default_factory=lambda: _env_float("EASEL_DEADLINE_SECONDS", 600.0)
    )
    # Open HTTP connections; beyond, the one idle longest is closed, or the newcomer gets 503.
    max_connections: int = field(default_factory=lambda: _env_int("EASEL_MAX_CONNECTIONS", 512))
    # Largest request line and headers, in bytes; larger heads get 431.
    max_header_bytes: int = field(
        default_factory=lambda: _env_int("EASEL_MAX_HEADER_BYTES", 16 * 1024)
    )
    # Seconds a connection may take to send a request's head (from its start, or after a pause).
    header_timeout_seconds: float = field(
        default_factory=lambda: _env_float("EASEL_HEADER_TIMEOUT_SECONDS", 20.0)
    )
    # Seconds a request may take to send its body; later, 408.
    body_timeout_seconds: float = field(
        default_factory=lambda: _env_float("EASEL_BODY_TIMEOUT_SECONDS", 60.0)
    )
    # Serve /docs and /openapi.json (the public API only).
    api_docs: bool = field(default_factory=lambda: _env_flag("EASEL_API_DOCS"))

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'easel.db'}"

    def validate(self) -> None:
        """Refuse settings that would be unsafe or cannot work."""
        if self.url_secret is not None and len(self.url_secret) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"EASEL_URL_SECRET must be at least {MIN_SECRET_LENGTH} characters: "
                "it signs every image URL"
            )
        if self.url_ttl_seconds < 1:
            raise ValueError("the URL lifetime must be at least one second")
        if self.max_body_bytes < 1024:
            raise ValueError("the request body limit must be at least 1024 bytes")
        if self.queue_images < 1 or self.batch_images < 1 or self.batch_pixels < 1:
            raise ValueError("the queue size and the batch budgets must be at least 1")
        if self.batch_wait_ms < 0 or self.deadline_seconds < 0:
            raise ValueError("the batch wait and the deadline cannot be negative")
        if self.public_base_url and not self.public_base_url.startswith(("http://", "https://")):
            raise ValueError("the public base URL must start with http:// or https://")
        if self.admin_key is not None:
            validate_admin_key(self.admin_key, self.url_secret)
        if self.log_format not in LOG_FORMATS:
            raise ValueError(f"the log format must be one of {', '.join(LOG_FORMATS)}")
        if self.reservation_ttl_seconds < 10:
            raise ValueError("EASEL_RESERVATION_TTL_SECONDS must be at least 10")
        if self.max_connections < 1 or self.max_header_bytes < 1024:
            raise ValueError("allow at least 1 connection and request heads of 1024 bytes")
        if self.header_timeout_seconds <= 0 or self.body_timeout_seconds <= 0:
            raise ValueError("the header and body timeouts must be positive")

    def signing_secret(self) -> bytes:
        """EASEL_URL_SECRET, else a random secret kept in the data directory across restarts."""
        if self.url_secret:
            return self.url_secret.encode()
        path = self.data_dir / "url-signing.key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process made it first; use theirs
                pass
            else:
                with os.fdopen(fd, "w") as handle:
                    handle.write(secrets.token_hex(32))
        return path.read_text().strip().encode()


def validate_admin_key(admin_key: str, url_secret: str | None = None) -> None:
    """Refuse an admin key that could be guessed or is shared with another secret."""
    if len(admin_key) < MIN_SECRET_LENGTH:
        raise ValueError(
            f"EASEL_ADMIN_KEY must be at least {MIN_SECRET_LENGTH} characters (try "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )
    if len(set(admin_key)) < MIN_ADMIN_KEY_DISTINCT_CHARACTERS:
        raise ValueError("EASEL_ADMIN_KEY is too repetitive to be a secret: use a random one")
    if admin_key == url_secret:
        raise ValueError("EASEL_ADMIN_KEY must differ from EASEL_URL_SECRET")
