"""The image store chosen by `--storage`, and the local store's URLs and sweep, in process."""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from easel.settings import Settings
from easel.storage.images import open_image_store
from easel.storage.local_images import LocalImageStore, UrlCheck


def test_default_storage_is_the_data_directory(tmp_path: Path) -> None:
    store = open_image_store(Settings(data_dir=tmp_path, storage=None))
    assert isinstance(store, LocalImageStore)
    assert store.directory == tmp_path / "images"


def test_storage_can_be_another_directory(tmp_path: Path) -> None:
    store = open_image_store(Settings(data_dir=tmp_path / "data", storage=str(tmp_path / "pngs")))
    assert isinstance(store, LocalImageStore)
    image_id = store.save(b"\x89PNG")
    assert (tmp_path / "pngs" / f"{image_id}.png").read_bytes() == b"\x89PNG"


def test_local_url_is_signed_for_the_lifetime(tmp_path: Path) -> None:
    store = LocalImageStore(tmp_path, b"k" * 32, ttl_seconds=120)
    image_id = store.save(b"\x89PNG")
    url = store.url(image_id, "https://images.example.test/files")
    parts = urlsplit(url)
    assert url.startswith(f"https://images.example.test/files/{image_id}.png?")
    query = parse_qs(parts.query)
    expires, signature = query["expires"][0], query["signature"][0]
    assert 110 <= int(expires) - time.time() <= 130
    assert store.check(image_id, expires, signature) is UrlCheck.VALID
    assert store.path(image_id).read_bytes() == b"\x89PNG"
    assert store.check(image_id, str(int(expires) + 1), signature) is UrlCheck.BAD_SIGNATURE
    store.path(image_id).unlink()
    assert store.check(image_id, expires, signature) is UrlCheck.NO_LONGER_STORED


def test_local_sweep_deletes_only_images_past_their_lifetime(tmp_path: Path) -> None:
    store = LocalImageStore(tmp_path, b"k" * 32, ttl_seconds=60)
    old, fresh = store.save(b"old"), store.save(b"fresh")
    two_minutes_ago = time.time() - 120
    os.utime(tmp_path / f"{old}.png", (two_minutes_ago, two_minutes_ago))
    assert store.sweep() == 1
    assert not (tmp_path / f"{old}.png").exists()
    assert (tmp_path / f"{fresh}.png").exists()


def test_local_sweep_leaves_files_easel_did_not_write(tmp_path: Path) -> None:
    # An operator's --storage may be a directory shared with other files.
    store = LocalImageStore(tmp_path, b"k" * 32, ttl_seconds=60)
    image = tmp_path / f"{store.save(b'old')}.png"
    (tmp_path / "nested").mkdir()
    others = [
        tmp_path / "notes.txt",
        tmp_path / "holiday.png",
        tmp_path / "tmp1a2b3c4d.tmp",
        tmp_path / "nested" / image.name,
    ]
    for path in others:
        path.write_bytes(b"not easel's")
    interrupted = tmp_path / ".easel-1a2b3c4d.tmp"  # a write that never reached its rename
    interrupted.write_bytes(b"half")
    two_minutes_ago = time.time() - 120
    for path in [image, interrupted, *others]:
        os.utime(path, (two_minutes_ago, two_minutes_ago))
    assert store.sweep() == 2
    assert not image.exists() and not interrupted.exists()
    assert all(path.exists() for path in others)


def test_s3_storage_needs_a_bucket_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="expected s3://BUCKET"):
        open_image_store(Settings(data_dir=tmp_path, storage="s3://"))
