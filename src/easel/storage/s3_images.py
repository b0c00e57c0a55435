"""Images in an S3-compatible bucket (AWS S3, MinIO, Ceph, R2, ...), fetched by presigned URLs.

The endpoint, region and credentials come from boto3's usual sources: AWS_ENDPOINT_URL (or
AWS_ENDPOINT_URL_S3), AWS_REGION / AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY,
AWS_PROFILE and ~/.aws/config, or an instance role.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from easel.storage.images import IMAGE_ID_PATTERN, ImageStore, new_image_id

# A SigV4 presigned URL cannot outlive a week.
MAX_PRESIGNED_SECONDS = 7 * 24 * 3600
_DELETE_BATCH = 1000  # DeleteObjects takes at most this many keys
_SUFFIX = ".png"


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # "" or ending in "/"

    @classmethod
    def parse(cls, uri: str) -> S3Location:
        """`s3://bucket` or `s3://bucket/some/prefix`."""
        rest = uri.removeprefix("s3://")
        bucket, _, prefix = rest.partition("/")
        if not bucket or rest == uri:
            raise ValueError(f"--storage {uri!r}: expected s3://BUCKET or s3://BUCKET/PREFIX")
        prefix = prefix.strip("/")
        return cls(bucket, prefix + "/" if prefix else "")

    def key(self, image_id: str) -> str:
        return f"{self.prefix}{image_id}{_SUFFIX}"


class S3ImageStore(ImageStore):
    """One object per image under the prefix; URLs are presigned GETs valid for the URL lifetime."""

    def __init__(self, client: Any, location: S3Location, ttl_seconds: int) -> None:
        if not 1 <= ttl_seconds <= MAX_PRESIGNED_SECONDS:
            raise ValueError(
                f"with S3 storage the URL lifetime must be 1 to {MAX_PRESIGNED_SECONDS} seconds "
                "(presigned URLs last at most 7 days)"
            )
        self._client = client
        self.location = location
        self.ttl_seconds = ttl_seconds

    @classmethod
    def connect(cls, uri: str, ttl_seconds: int) -> S3ImageStore:
        """A store on the bucket in `uri`, checked for access now rather than at the first image."""
        location = S3Location.parse(uri)
        client = boto3.session.Session().client(
            "s3", config=Config(signature_version="s3v4", retries={"mode": "standard"})
        )
        store = cls(client, location, ttl_seconds)
        try:
            client.head_bucket(Bucket=location.bucket)
        except (BotoCoreError, ClientError) as exc:
            client.close()
            raise ValueError(
                f"cannot use {uri} for images: {exc}. Check the bucket name, AWS_ENDPOINT_URL and "
                "the AWS credentials"
            ) from exc
        return store

    def save(self, png: bytes) -> str:
        image_id = new_image_id()
        self._client.put_object(
            Bucket=self.location.bucket,
            Key=self.location.key(image_id),
            Body=png,
            ContentType="image/png",
            CacheControl=f"private, max-age={self.ttl_seconds}",
        )
        return image_id

    def url(self, image_id: str, base_url: str) -> str:
        return str(
            self._client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.location.bucket, "Key": self.location.key(image_id)},
                ExpiresIn=self.ttl_seconds,
            )
        )

    def sweep(self, now: float | None = None) -> int:
        # Only image objects directly under the prefix: a shared bucket's other data is left alone.
        cutoff = (now if now is not None else time.time()) - self.ttl_seconds
        expired = [
            {"Key": item["Key"]}
            for item in self._list_images()
            if item["LastModified"].timestamp() < cutoff
        ]
        for start in range(0, len(expired), _DELETE_BATCH):
            self._client.delete_objects(
                Bucket=self.location.bucket,
                Delete={"Objects": expired[start : start + _DELETE_BATCH], "Quiet": True},
            )
        return len(expired)

    def close(self) -> None:
        self._client.close()

    def _list_images(self) -> list[dict[str, Any]]:
        paginator = self._client.get_paginator("list_objects_v2")
        found = []
        pages = paginator.paginate(
            Bucket=self.location.bucket, Prefix=self.location.prefix, Delimiter="/"
        )
        for page in pages:
            for item in page.get("Contents", []):
                name = item["Key"][len(self.location.prefix) :]
                if name.endswith(_SUFFIX) and IMAGE_ID_PATTERN.match(name.removesuffix(_SUFFIX)):
                    found.append(item)
        return found
