"""Model files by URL: fetched once per worker into a local cache keyed by sha256.

Every model file the project reads — render's and train's checkpoints (official ``.pth`` or our
safetensors), the VGG-19 weights, the estimators' ONNX / TorchScript files — is an fsspec URL,
so that a Ray actor, a Ray Train worker or a Flink/Spark/Dataflow worker can fetch it from object
storage. The loaders (``gpvton_core.checkpoints``, onnxruntime, ``torch.jit``) open plain local
paths only; :func:`fetch_model` is the one step in between.

A remote file is downloaded once per machine into ``CACHE/<sha256>/<name>`` (the bytes are hashed
while they arrive and moved into place atomically, so concurrent workers never see half a file);
a small index maps the remote identity (URL, size, ETag/mtime) to that hash, so a second fetch of
an unchanged object costs one ``info`` call. The sha256 is what provenance and ``job.json``
record, so two runs with the same file agree whatever URL it came from. Within a process the
result is remembered, so a large local checkpoint is hashed once.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from infra.storage import S3Settings, filesystem, is_local, strip_scheme, with_retries

CACHE_ENV = "GPVTON_MODEL_CACHE"


@dataclass(frozen=True)
class ModelFile:
    """A model file on local disk (``path``) with its origin and content hash."""

    url: str
    path: str
    sha256: str


_memo: dict[tuple, ModelFile] = {}
_memo_lock = threading.Lock()


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


def _name(url: str) -> str:
    # the loaders tell formats by the suffix (.safetensors, .onnx): keep the file's own name
    return os.path.basename(url.rstrip("/")) or "model"


def _download(fs, url: str, name: str) -> tuple[str, str]:
    """Stream ``url`` into a temporary file while hashing it; (sha256, cached path)."""
    root = cache_dir()
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".part-")
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, fs.open(strip_scheme(url), "rb") as src:
            while block := src.read(1 << 20):
                h.update(block)
                out.write(block)
        digest = h.hexdigest()
        target = root / digest / name
        target.parent.mkdir(exist_ok=True)
        os.replace(tmp, target)           # atomic: concurrent workers never see half a file
        return digest, str(target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def fetch_model(url: str, s3: S3Settings | None = None) -> ModelFile:
    """Make the model at ``url`` available on local disk; raises FileNotFoundError naming the URL.

    Transient storage failures are retried (``infra.storage.with_retries``); a missing file is not.
    """
    local = local_path(url)
    if local is not None:
        try:
            st = os.stat(local)
        except FileNotFoundError:
            raise FileNotFoundError(f"model file not found: {url}") from None
        if not os.path.isfile(local):
            raise FileNotFoundError(f"model file not found: {url}")
        key: tuple = ("file", local, st.st_size, st.st_mtime_ns)
        with _memo_lock:
            if key in _memo:
                return _memo[key]
        mf = ModelFile(url=url, path=local, sha256=sha256_file(local))
    else:
        fs = filesystem(url, s3)
        try:
            fs.invalidate_cache(strip_scheme(url))
            info = with_retries(lambda: fs.info(strip_scheme(url)), what=f"info {url}")
        except FileNotFoundError:
            raise FileNotFoundError(f"model file not found: {url}") from None
        if info.get("type") == "directory":   # a prefix with objects under it, as a local folder: no file
            raise FileNotFoundError(f"model file not found: {url}")
        key = (url, info.get("size"), str(info.get("ETag") or info.get("mtime") or info.get("LastModified")))
        with _memo_lock:
            if key in _memo:
                return _memo[key]
        name = _name(url)
        index = cache_dir() / "by-url" / hashlib.sha256("|".join(map(str, key)).encode()).hexdigest()
        digest = index.read_text().strip() if index.is_file() else ""
        path = cache_dir() / digest / name if digest else None
        if path is None or not path.is_file():
            digest, p = with_retries(lambda: _download(fs, url, name), what=f"fetch {url}")
            path = Path(p)
            index.parent.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=index.parent, prefix=".part-")
            with os.fdopen(fd, "w") as fh:
                fh.write(digest)
            os.replace(tmp, index)
        mf = ModelFile(url=url, path=str(path), sha256=digest)
    with _memo_lock:
        _memo[key] = mf
    return mf


def model_sha256(url: str, s3: S3Settings | None = None) -> str:
    """The sha256 of the model file at ``url`` (fetched into the cache on the way)."""
    return fetch_model(url, s3).sha256
