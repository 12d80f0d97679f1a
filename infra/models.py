"""User model files by URL: fetched once per worker into a local cache, identified by sha256.

Estimators (pose, parsing, DensePose, garment matting) take their model files as fsspec URLs so
that a Flink, Spark or Dataflow worker can fetch them from object storage. The cache key is the
URL plus the remote size/mtime where the filesystem reports them; the sha256 of the bytes is what
provenance records, so two runs with the same file agree whatever URL it came from.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from infra.storage import S3Settings, filesystem, is_local

CACHE_ENV = "GPVTON_MODEL_CACHE"


@dataclass(frozen=True)
class ModelFile:
    """A model file on local disk (``path``) with its origin and content hash."""

    url: str
    path: str
    sha256: str


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "gpvton", "models")
    Path(root).mkdir(parents=True, exist_ok=True)
    return Path(root)


def local_path(url: str) -> str | None:
    """The plain local path of a local URL (``file://``, ``~`` and relative paths resolved)."""
    if not is_local(url):
        return None
    p = url[len("file://"):] if url.startswith("file://") else url
    return os.path.abspath(os.path.expanduser(p))


def fetch_model(url: str, s3: S3Settings | None = None) -> ModelFile:
    """Make the model at ``url`` available on local disk; raises FileNotFoundError naming the URL."""
    local = local_path(url)
    if local is not None:
        if not os.path.isfile(local):
            raise FileNotFoundError(f"model file not found: {url}")
        return ModelFile(url=url, path=local, sha256=sha256_file(local))
    fs = filesystem(url, s3)
    try:
        info = fs.info(url)
    except FileNotFoundError:
        raise FileNotFoundError(f"model file not found: {url}") from None
    tag = hashlib.sha256(f"{url}|{info.get('size')}|{info.get('ETag') or info.get('mtime')}".encode()).hexdigest()[:16]
    name = f"{tag}-{os.path.basename(url.rstrip('/')) or 'model'}"
    target = cache_dir() / name
    if not target.is_file():
        fd, tmp = tempfile.mkstemp(dir=cache_dir(), prefix=".part-")
        os.close(fd)
        try:
            fs.get(url, tmp)
            os.replace(tmp, target)       # atomic: concurrent workers never see half a file
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return ModelFile(url=url, path=str(target), sha256=sha256_file(target))
