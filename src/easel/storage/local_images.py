"""Images on local disk, reachable through this server by HMAC-signed, expiring URLs."""

from __future__ import annotations

import hashlib
import hmac
import os
import tempfile
import time
from pathlib import Path

from easel.errors import GoneError, NotFoundError, PermissionDeniedError
from easel.storage.images import IMAGE_ID_PATTERN, ImageStore, new_image_id

IMAGE_ROUTE = "/files/images"
# Names of a write in progress; the sweep removes those an interrupted write left behind.
_TEMP_PREFIX = ".easel-"
_TEMP_SUFFIX = ".tmp"


class LocalImageStore(ImageStore):
    """Writes PNGs under one directory, signs their URLs and deletes them once expired."""

    def __init__(self, directory: Path, secret: bytes, ttl_seconds: int) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self._secret = secret
        self.ttl_seconds = ttl_seconds

    def save(self, png: bytes) -> str:
        image_id = new_image_id()
        # Write then rename, so a reader never sees half a file.
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=_TEMP_PREFIX, suffix=_TEMP_SUFFIX)
        with os.fdopen(fd, "wb") as handle:
            handle.write(png)
        os.replace(tmp, self._path(image_id))
        return image_id

    def url(self, image_id: str, base_url: str) -> str:
        return base_url + self.signed_path(image_id)

    def signed_path(self, image_id: str, now: float | None = None) -> str:
        """The URL path and query that fetch this image until the lifetime runs out."""
        expires = int((now if now is not None else time.time()) + self.ttl_seconds)
        return f"{IMAGE_ROUTE}/{image_id}.png?expires={expires}&signature={self._sign(image_id, expires)}"

    def open(self, image_id: str, expires: str | None, signature: str | None) -> Path:
        """The file behind a signed URL; 404 unknown, 403 bad signature, 410 expired."""
        if not IMAGE_ID_PATTERN.match(image_id):
            raise NotFoundError("No such image.", code="image_not_found")
        if not expires or not signature or not expires.isdigit():
            raise PermissionDeniedError(
                "This image URL is not signed.", param="signature", code="invalid_signature"
            )
        if not hmac.compare_digest(self._sign(image_id, int(expires)), signature):
            raise PermissionDeniedError(
                "This image URL's signature is not valid.",
                param="signature",
                code="invalid_signature",
            )
        if int(expires) < time.time():
            raise GoneError("This image URL has expired.", code="url_expired")
        path = self._path(image_id)
        if not path.is_file():
            raise GoneError("This image is no longer stored.", code="url_expired")
        return path

    def sweep(self, now: float | None = None) -> int:
        """Delete Easel's own files older than the lifetime: its images and the temp files of
        interrupted writes, directly in the directory. Anything else there is left alone, since
        `--storage` may name a directory that other files share."""
        cutoff = (now if now is not None else time.time()) - self.ttl_seconds
        removed = 0
        for entry in os.scandir(self.directory):
            try:
                if (
                    _written_by_easel(entry.name)
                    and entry.is_file(follow_symlinks=False)
                    and entry.stat(follow_symlinks=False).st_mtime < cutoff
                ):
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:  # removed concurrently
                continue
        return removed

    def _path(self, image_id: str) -> Path:
        return self.directory / f"{image_id}.png"

    def _sign(self, image_id: str, expires: int) -> str:
        message = f"{image_id}.{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()


def _written_by_easel(name: str) -> bool:
    """An image's file (`<id>.png`) or the temp file of a write in progress."""
    if name.startswith(_TEMP_PREFIX) and name.endswith(_TEMP_SUFFIX):
        return True
    return name.endswith(".png") and IMAGE_ID_PATTERN.match(name.removesuffix(".png")) is not None
