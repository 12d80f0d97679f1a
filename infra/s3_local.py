"""A real S3 API on 127.0.0.1 for development, demos and tests (moto's server mode).

It speaks the S3 wire protocol, so boto3, s3fs, pyarrow, Beam and Ray workers talk to it exactly
as they talk to AWS or MinIO. Production points the same code at a real endpoint instead.

    with LocalS3("gpvton-test") as s3:
        s3.settings    # S3Settings(endpoint_url="http://127.0.0.1:PORT", ...)
        s3.url("jobs/x")  # "s3://gpvton-test/jobs/x"
"""

from __future__ import annotations

import os
from typing import Any

from infra.storage import S3Settings

DEFAULT_KEY = "gpvton-local"
DEFAULT_SECRET = "gpvton-local-secret"


class LocalS3:
    """Start moto's threaded S3 server on a free loopback port and create a bucket."""

    def __init__(self, bucket: str = "gpvton", region: str = "us-east-1"):
        self.bucket = bucket
        self.region = region
        self._server: Any = None
        self.settings: S3Settings | None = None

    def start(self) -> "LocalS3":
        from moto.server import ThreadedMotoServer  # optional dependency (dev extra)

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.settings = S3Settings(
            endpoint_url=f"http://{host}:{port}",
            access_key_id=DEFAULT_KEY,
            secret_access_key=DEFAULT_SECRET,
            region=self.region,
        )
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=self.settings.endpoint_url,
            aws_access_key_id=DEFAULT_KEY,
            aws_secret_access_key=DEFAULT_SECRET,
            region_name=self.region,
        )
        client.create_bucket(Bucket=self.bucket)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def url(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key.lstrip('/')}".rstrip("/")

    def env(self) -> dict[str, str]:
        """Environment for child processes (Ray workers, Beam) to reach this server."""
        assert self.settings is not None, "start() first"
        return self.settings.export_env()

    def apply_env(self) -> None:
        os.environ.update(self.env())

    def __enter__(self) -> "LocalS3":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
