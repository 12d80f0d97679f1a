"""Object storage through fsspec: one API for local folders and ``s3://`` buckets.

Every job writes through these helpers so that the same code runs on a laptop (a local folder)
and in production (S3 or any fsspec backend). Writes are atomic: a local file is written under a
temporary name and renamed; on object stores a single PUT is already atomic. Done-markers are
written last, so a reader that sees a marker sees a complete unit.

S3 settings come from the usual AWS environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3``, ``AWS_DEFAULT_REGION``) or from an explicit
:class:`S3Settings` passed by the job config.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterator, TypeVar

import fsspec

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class S3Settings:
    """Explicit S3 connection settings; ``None`` fields fall back to the AWS environment."""

    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    region: str | None = None

    @classmethod
    def from_env(cls) -> "S3Settings":
        return cls(
            endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"),
            access_key_id=os.environ.get("AWS_ACCESS_KEY_ID"),
            secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
            region=os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION"),
        )

    def storage_options(self) -> dict[str, Any]:
        """fsspec/s3fs keyword arguments."""
        opts: dict[str, Any] = {}
        if self.access_key_id:
            opts["key"] = self.access_key_id
        if self.secret_access_key:
            opts["secret"] = self.secret_access_key
        client: dict[str, Any] = {}
        if self.endpoint_url:
            client["endpoint_url"] = self.endpoint_url
        if self.region:
            client["region_name"] = self.region
        if client:
            opts["client_kwargs"] = client
        return opts

    def export_env(self) -> dict[str, str]:
        """Environment variables that make boto3/s3fs in child processes (Ray, Beam) see these settings."""
        env = {}
        if self.endpoint_url:
            env["AWS_ENDPOINT_URL"] = self.endpoint_url
            env["AWS_ENDPOINT_URL_S3"] = self.endpoint_url
        if self.access_key_id:
            env["AWS_ACCESS_KEY_ID"] = self.access_key_id
        if self.secret_access_key:
            env["AWS_SECRET_ACCESS_KEY"] = self.secret_access_key
        if self.region:
            env["AWS_DEFAULT_REGION"] = self.region
        return env


def normalize_url(url: str) -> str:
    """A storage URL that means the same from any working directory (every job's URL arguments).

    A relative path becomes absolute, ``~`` is expanded, ``file://PATH`` becomes ``PATH``; remote
    URLs (``s3://…``, ``memory://…``) pass unchanged. An empty string stays empty, so that a
    missing value is still detected as missing.
    """
    if not url:
        return url
    if "://" in url:
        scheme, rest = url.split("://", 1)
        if scheme != "file":
            return url
        url = rest
    return os.path.abspath(os.path.expanduser(url))


def protocol(url: str) -> str:
    """``"file"`` for local paths, else the URL scheme (``"s3"``, ``"memory"``, ...)."""
    if "://" not in url:
        return "file"
    return url.split("://", 1)[0]


def is_local(url: str) -> bool:
    return protocol(url) == "file"


def join(base: str, *parts: str) -> str:
    """Join URL parts with ``/`` (also for local paths, which fsspec accepts)."""
    out = base.rstrip("/")
    for p in parts:
        p = p.strip("/")
        if p:
            out = f"{out}/{p}"
    return out


def filesystem(url: str, s3: S3Settings | None = None) -> fsspec.AbstractFileSystem:
    """The fsspec filesystem for ``url`` (S3 settings applied for ``s3://``)."""
    proto = protocol(url)
    if proto in ("s3", "s3a"):
        settings = s3 or S3Settings.from_env()
        return fsspec.filesystem("s3", **settings.storage_options())
    return fsspec.filesystem(proto)


def _strip(url: str) -> str:
    """Path as the filesystem object expects it (no scheme for local paths)."""
    if url.startswith("file://"):
        return url[len("file://"):]
    return url


def with_retries(fn: Callable[[], T], *, what: str, attempts: int = 5, base_delay: float = 0.2) -> T:
    """Run ``fn`` and retry transient storage errors with exponential backoff and jitter.

    Missing files and permission errors are not transient and are raised at once.
    """
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError):
            raise
        except Exception as exc:  # noqa: BLE001 - storage backends raise many types
            if attempt == attempts:
                raise
            delay = base_delay * (2 ** (attempt - 1)) * (0.5 + random.random())
            log.warning("storage: %s failed (%s: %s); retry %d/%d in %.2fs",
                        what, type(exc).__name__, exc, attempt, attempts - 1, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


class Storage:
    """A job's storage root: read, write atomically, list, mark done — local or remote alike."""

    def __init__(self, root: str, s3: S3Settings | None = None, retries: int = 5):
        root = normalize_url(root)  # relative roots would not match the absolute paths fsspec lists
        self.root = root.rstrip("/") if root not in ("/",) else root
        self.s3 = s3
        self.retries = retries
        self.fs = filesystem(root, s3)

    # --- paths -----------------------------------------------------------------------------
    def url(self, *parts: str) -> str:
        return join(self.root, *parts)

    def _path(self, key: str) -> str:
        return _strip(self.url(key))

    # --- reads -------------------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        return with_retries(lambda: self.fs.exists(self._path(key)), what=f"exists {key}",
                            attempts=self.retries)

    def read_bytes(self, key: str) -> bytes:
        return with_retries(lambda: self.fs.cat_file(self._path(key)), what=f"read {key}",
                            attempts=self.retries)

    def read_json(self, key: str) -> Any:
        return json.loads(self.read_bytes(key).decode("utf-8"))

    def list(self, prefix: str = "", suffix: str = "") -> list[str]:
        """Keys (relative to the root) under ``prefix`` ending with ``suffix``, sorted."""
        base = self._path(prefix) if prefix else _strip(self.root)
        try:
            found = with_retries(lambda: self.fs.find(base), what=f"list {prefix}",
                                 attempts=self.retries)
        except FileNotFoundError:
            return []
        root = _strip(self.root).rstrip("/")
        if protocol(self.root) != "file":
            root = root.split("://", 1)[1]
        keys = []
        for f in found:
            f = f.split("://", 1)[-1]
            rel = f[len(root):].lstrip("/") if f.startswith(root) else f
            if rel.endswith(suffix) and ".tmp-" not in posixpath.basename(rel):
                keys.append(rel)
        return sorted(keys)

    # --- writes ------------------------------------------------------------------------------
    def write_bytes(self, key: str, data: bytes) -> str:
        """Write ``data`` atomically under ``key``; returns the full URL."""
        path = self._path(key)

        def _write() -> None:
            if protocol(self.root) == "file":
                directory = os.path.dirname(path)
                os.makedirs(directory, exist_ok=True)
                tmp = os.path.join(directory, f".tmp-{uuid.uuid4().hex}-{os.path.basename(path)}")
                try:
                    with open(tmp, "wb") as fh:
                        fh.write(data)
                        fh.flush()
                        os.fsync(fh.fileno())
                    os.replace(tmp, path)
                finally:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
            else:
                # A single PUT is atomic on object stores: readers see all or nothing.
                self.fs.pipe_file(path, data)

        with_retries(_write, what=f"write {key}", attempts=self.retries)
        return self.url(key)

    def write_json(self, key: str, obj: Any) -> str:
        return self.write_bytes(key, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())

    def delete(self, key: str) -> None:
        path = self._path(key)
        if self.fs.exists(path):
            with_retries(lambda: self.fs.rm(path, recursive=True), what=f"delete {key}",
                         attempts=self.retries)

    # --- done markers -----------------------------------------------------------------------
    def mark_done(self, key: str, info: dict[str, Any] | None = None) -> None:
        """Write ``key + '.done'`` last: the unit it marks is complete."""
        self.write_json(f"{key}.done", info or {})

    def is_done(self, key: str) -> bool:
        return self.exists(f"{key}.done")

    def iter_done(self, prefix: str) -> Iterator[str]:
        for k in self.list(prefix, ".done"):
            yield k[: -len(".done")]


def sanitize_id(item_id: str, max_len: int = 128) -> str:
    """A storage-safe key component for a retailer id: no separators, no dot-dot, bounded length.

    Deterministic, so output keys are reproducible; ids that would collide after cleaning keep
    apart through a short hash suffix.
    """
    import hashlib
    import re

    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", item_id).strip("._") or "_"
    if cleaned != item_id or len(cleaned) > max_len:
        digest = hashlib.sha1(item_id.encode("utf-8")).hexdigest()[:8]
        cleaned = f"{cleaned[: max_len - 9]}-{digest}"
    return cleaned
