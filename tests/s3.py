"""A local S3-compatible server (moto's server mode) for the storage tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from tests.server import free_port

BUCKET = "easel-images"


@dataclass
class S3Server:
    server: ThreadedMotoServer
    endpoint: str

    @property
    def env(self) -> dict[str, str]:
        """The usual AWS settings, pointing boto3 (in Easel's processes) at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "easel-test",
            "AWS_SECRET_ACCESS_KEY": "easel-test-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def client(self) -> Any:
        env = self.env
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_DEFAULT_REGION"],
        )


def start_s3() -> S3Server:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    s3 = S3Server(server, f"http://127.0.0.1:{port}")
    s3.client().create_bucket(Bucket=BUCKET)
    return s3
