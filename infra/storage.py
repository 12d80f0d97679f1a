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

import errno
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

from infra import failpoints

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


def strip_scheme(url: str) -> str:
    """Path as the filesystem object expects it (no scheme for local paths)."""
    if url.startswith("file://"):
        return url[len("file://"):]
    return url


# --- transient vs permanent failures ----------------------------------------------------------

#: Prefix of a score row's ``error`` when the pair failed for a storage reason, not for its input:
#: planning re-attempts such rows on a plain rerun (deterministic error rows need ``--retry-errors``).
TRANSIENT_PREFIX = "transient: "

#: Seconds a transient storage failure is retried before it is given up (an outage of minutes
#: must not become a lost result); ``GPVTON_STORAGE_RETRY_S`` overrides it.
DEFAULT_RETRY_BUDGET_S = 600.0

_PERMANENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)
_PERMANENT_ERRNO = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EINVAL,
                    errno.ENAMETOOLONG, errno.EFBIG}
_TRANSIENT_ERRNO = {errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT, errno.EPIPE,
                    errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.EAGAIN, errno.EBUSY,
                    errno.EREMOTEIO}  # EREMOTEIO: s3fs's translation of S3 "InternalError"
# botocore / aiohttp / fsspec classes, matched by name so that infra imports none of them
_TRANSIENT_NAMES = {"EndpointConnectionError", "ConnectionClosedError", "ConnectTimeoutError",
                    "ReadTimeoutError", "ProxyConnectionError", "HTTPClientError", "ClientConnectorError",
                    "ClientOSError", "ServerDisconnectedError", "ServerTimeoutError", "ClientPayloadError",
                    "FSTimeoutError", "IncompleteRead", "ResponseStreamingError", "NoHttpResponseError"}
_TRANSIENT_CODES = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling",
                    "ThrottlingException", "RequestLimitExceeded", "500", "502", "503", "504"}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen and len(seen) < 8:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a storage failure that may succeed later (network down, server busy).

    Missing files, refused permissions, a full or read-only disk are not: retrying cannot help.
    The exception's cause chain is searched, as s3fs and pyarrow wrap the network error.
    """
    if isinstance(exc, _PERMANENT) or (isinstance(exc, OSError) and exc.errno in _PERMANENT_ERRNO):
        return False
    for e in _chain(exc):
        if isinstance(e, (ConnectionError, TimeoutError)):
            return True
        if isinstance(e, OSError) and e.errno in _TRANSIENT_ERRNO:
            return True
        if any(c.__name__ in _TRANSIENT_NAMES for c in type(e).__mro__):
            return True
        resp = getattr(e, "response", None)
        if isinstance(resp, dict):
            err = resp.get("Error") or {}
            status = (resp.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0
            if str(err.get("Code")) in _TRANSIENT_CODES or status >= 500 or status == 429:
                return True
    return False


def retry_budget_s() -> float:
    """The transient-failure retry budget in seconds (``GPVTON_STORAGE_RETRY_S`` or the default)."""
    raw = os.environ.get("GPVTON_STORAGE_RETRY_S", "").strip()
    return float(raw) if raw else DEFAULT_RETRY_BUDGET_S


def with_retries(fn: Callable[[], T], *, what: str, attempts: int = 5, base_delay: float = 0.2,
                 budget_s: float | None = None, max_delay: float = 15.0) -> T:
    """Run ``fn``, retrying failures with exponential backoff and jitter.

    A transient failure (:func:`is_transient`) is retried until ``budget_s`` seconds have passed
    (default :func:`retry_budget_s`, minutes: a store that restarts must not lose results); any
    other unknown failure ``attempts`` times; a permanent one (missing file, permission, full or
    read-only disk) is raised at once.
    """
    budget = retry_budget_s() if budget_s is None else budget_s
    start = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - storage backends raise many types
            if isinstance(exc, _PERMANENT) or (isinstance(exc, OSError) and exc.errno in _PERMANENT_ERRNO):
                raise
            transient = is_transient(exc)
            delay = min(max_delay, base_delay * (2 ** min(attempt - 1, 20))) * (0.5 + random.random())
            elapsed = time.monotonic() - start
            if transient:
                if elapsed >= budget:
                    raise
                delay = max(0.0, min(delay, budget - elapsed))
            elif attempt >= attempts:
                raise
            log.warning("storage: %s failed (%s%s: %s); retry %d in %.2fs (%.0fs of %s)",
                        what, "transient " if transient else "", type(exc).__name__, exc, attempt, delay,
                        elapsed, f"{budget:.0f}s" if transient else f"{attempts} attempts")
            time.sleep(delay)


class Storage:
    """A job's storage root: read, write atomically, list, mark done — local or remote alike."""

    def __init__(self, root: str, s3: S3Settings | None = None, retries: int = 5,
                 retry_budget_s: float | None = None):
        """``retries`` bounds unknown failures; ``retry_budget_s`` (seconds, default
        :func:`retry_budget_s`) bounds transient ones (see :func:`with_retries`)."""
        root = normalize_url(root)  # relative roots would not match the absolute paths fsspec lists
        self.root = root.rstrip("/") if root not in ("/",) else root
        self.s3 = s3
        self.retries = retries
        self.retry_budget_s = retry_budget_s
        self.fs = filesystem(root, s3)

    def _retry(self, fn: Callable[[], T], what: str) -> T:
        return with_retries(fn, what=what, attempts=self.retries, budget_s=self.retry_budget_s)

    def _fresh(self, path: str) -> str:
        """``path``, with the filesystem's cached listings of it and its parents dropped.

        s3fs answers ``exists`` / ``cat_file`` from directory listings cached earlier in the
        process: an object written since (by a worker, or another run) would read as missing.
        """
        if protocol(self.root) != "file":
            self.fs.invalidate_cache(path)
        return path

    # --- paths -----------------------------------------------------------------------------
    def url(self, *parts: str) -> str:
        return join(self.root, *parts)

    def path(self, key: str) -> str:
        """The key's path as ``self.fs`` takes it (for callers that open files through ``fs``)."""
        return strip_scheme(self.url(key))

    # --- reads -------------------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        return self._retry(lambda: self.fs.exists(self._fresh(self.path(key))), f"exists {key}")

    def read_bytes(self, key: str) -> bytes:
        """One GET on object stores (s3fs would ask for the size first, a HEAD per read); a missing
        key raises FileNotFoundError, so callers read instead of asking ``exists`` first."""
        kw = {"max_concurrency": 1} if protocol(self.root) in ("s3", "s3a") else {}
        return self._retry(lambda: self.fs.cat_file(self._fresh(self.path(key)), **kw), f"read {key}")

    def read_json(self, key: str) -> Any:
        return json.loads(self.read_bytes(key).decode("utf-8"))

    def list(self, prefix: str = "", suffix: str = "") -> list[str]:
        """Keys (relative to the root) under ``prefix`` ending with ``suffix``, sorted."""
        base = self.path(prefix) if prefix else strip_scheme(self.root)
        try:
            found = self._retry(lambda: self.fs.find(self._fresh(base)), f"list {prefix}")
        except FileNotFoundError:
            return []
        root = strip_scheme(self.root).rstrip("/")
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
        path = self.path(key)

        def _write() -> None:
            failpoints.storage_write(key)
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

        self._retry(_write, f"write {key}")
        return self.url(key)

    def write_json(self, key: str, obj: Any) -> str:
        return self.write_bytes(key, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())

    def delete(self, key: str) -> None:
        path = self.path(key)
        if self._retry(lambda: self.fs.exists(path), f"exists {key}"):
            self._retry(lambda: self.fs.rm(path, recursive=True), f"delete {key}")

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
