"""Where generated images live: one interface, on local disk or in S3-compatible object storage."""

from __future__ import annotations

import re
import secrets
from abc import ABC, abstractmethod
from pathlib import Path

from easel.settings import Settings

# 24 random bytes, URL-safe base64: unguessable, and a strict pattern rules out path traversal.
IMAGE_ID_BYTES = 24
IMAGE_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{32}$")


def new_image_id() -> str:
    return secrets.token_urlsafe(IMAGE_ID_BYTES)


class ImageStore(ABC):
    """Keeps PNGs for `ttl_seconds` and hands out URLs that need no API key and expire with them."""

    ttl_seconds: int

    @abstractmethod
    def save(self, png: bytes) -> str:
        """Store one PNG; returns its new id."""

    @abstractmethod
    def url(self, image_id: str, base_url: str) -> str:
        """An absolute URL that fetches the image until its lifetime runs out.

        `base_url` is the absolute URL under which this server serves stored images; stores that
        serve images themselves ignore it.
        """

    @abstractmethod
    def sweep(self, now: float | None = None) -> int:
        """Delete images older than the URL lifetime; returns how many were removed."""

    def close(self) -> None:  # noqa: B027 - a default, not a method subclasses must write
        """Release connections; the default has none."""


def open_image_store(settings: Settings) -> ImageStore:
    """`--storage s3://bucket/prefix` opens an S3-compatible bucket; a path (or nothing: the data
    directory's images/) a local directory. Raises ValueError saying why a location cannot be used.
    """
    storage = settings.storage
    if storage and storage.startswith("s3://"):
        try:
            from easel.storage.s3_images import S3ImageStore  # boto3 is needed only for S3
        except ImportError as exc:
            raise ValueError(f"S3 storage needs boto3: pip install 'easel[s3]' ({exc})") from exc

        return S3ImageStore.connect(storage, settings.url_ttl_seconds)
    from easel.storage.local_images import LocalImageStore

    directory = Path(storage).expanduser() if storage else settings.images_dir
    return LocalImageStore(directory, settings.signing_secret(), settings.url_ttl_seconds)
