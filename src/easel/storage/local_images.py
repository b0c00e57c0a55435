"""Images on local disk, reachable through this server by HMAC-signed, expiring URLs."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import tempfile
import time
from enum import StrEnum
from pathlib import Path

from easel.storage.images import IMAGE_ID_PATTERN, ImageStore, new_image_id

# What a signed URL's `expires` can be: a Unix time in ASCII digits, of a sane length (int()
# refuses thousands of digits, and other scripts' digits pass str.isdigit()).
_EXPIRES_PATTERN = re.compile(r"^[0-9]{1,12}$")
# Names of a write in progress; the sweep removes those an interrupted write left behind.
_TEMP_PREFIX = ".easel-"
_TEMP_SUFFIX = ".tmp"


class UrlCheck(StrEnum):
    """What a signed URL's parts say about the image it names."""

    VALID = "valid"
    UNKNOWN_IMAGE = "unknown_image"  # not an id this store hands out
    UNSIGNED = "unsigned"  # `expires` or `signature` missing or malformed
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    NO_LONGER_STORED = "no_longer_stored"


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
        os.replace(tmp, self.path(image_id))
        return image_id

    def url(self, image_id: str, base_url: str) -> str:
        """`{base_url}/{image_id}.png?expires=...&signature=...`."""
        expires = int(time.time() + self.ttl_seconds)
        signature = self._sign(image_id, expires)
        return f"{base_url}/{image_id}.png?expires={expires}&signature={signature}"

    def check(self, image_id: str, expires: str | None, signature: str | None) -> UrlCheck:
        """Whether a URL's image id, `expires` and `signature` open the image."""
        if not IMAGE_ID_PATTERN.match(image_id):
            return UrlCheck.UNKNOWN_IMAGE
        if not expires or not signature or not _EXPIRES_PATTERN.match(expires):
            return UrlCheck.UNSIGNED
        if not hmac.compare_digest(self._sign(image_id, int(expires)), signature):
            return UrlCheck.BAD_SIGNATURE
        if int(expires) < time.time():
            return UrlCheck.EXPIRED
        if not self.path(image_id).is_file():
            return UrlCheck.NO_LONGER_STORED
        return UrlCheck.VALID

    def path(self, image_id: str) -> Path:
        """Where the image with this (well-formed) id is stored."""
        return self.directory / f"{image_id}.png"

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

    def _sign(self, image_id: str, expires: int) -> str:
        message = f"{image_id}.{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()


def _written_by_easel(name: str) -> bool:
    """An image's file (`<id>.png`) or the temp file of a write in progress."""
    if name.startswith(_TEMP_PREFIX) and name.endswith(_TEMP_SUFFIX):
        return True
    return name.endswith(".png") and IMAGE_ID_PATTERN.match(name.removesuffix(".png")) is not None
