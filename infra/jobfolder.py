"""A render job's folder: the one owner of its layout, its work area, its index and its change lists.

A render output is a *catalogue*: it holds the current render of every pair that the shards and
settings call for, and each run renders only the pairs whose content key is new. Layout::

    JOB/job.json                          settings of the last run, created / updated times
    JOB/lock.json                         the running job's lease (infra/lease.py)
    JOB/plan/run.json                     the run in progress (the work area): run id, index generation
    JOB/plan/units.parquet                its units (appended to when a crashed run resumes)
    JOB/scores/unit-NNNNN.parquet (.done) one score row per pair of a unit; the marker carries counts
    JOB/index/manifest.json               the current index: parts, per-part counts (one write commits)
    JOB/index/gNNNNN/bucket-BBBB.parquet  index rows: a pair, its keys, its render and scores
    JOB/changes/RUN.parquet               each run's change list (added / updated / retired pairs)
    JOB/runs/RUN.json                     each run's summary;  JOB/summary.json: the last one
    JOB/renders/CAT/PERSON/GARMENT-VERSION.EXT   content-versioned images (VERSION from the pair key)
    JOB/logs/                             driver and worker logs

Readers (status, report, eval, the next night) read markers, the index manifest and the index
parts — never every unit's score file. The index is bucketed by garment id, so a night that
changes a few garments rewrites a few parts, and a 10M-pair catalogue is at most
``MAX_BUCKETS`` files.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable, Optional

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from infra.schema import FLAGS, INDEX, SCORES
from infra.storage import S3Settings, Storage, TRANSIENT_PREFIX, sanitize_id

log = logging.getLogger(__name__)

INDEX_PREFIX = "index"
ROWS_PER_BUCKET = 50_000     # the index's bucket count is chosen for this many rows a part
MAX_BUCKETS = 256
READ_THREADS = 16            # object stores: parallel GETs (latency-bound)
ERROR_REASONS_KEPT = 20      # distinct error messages a marker / part keeps


def pair_version(person_key: str, garment_key: str, model_key: str) -> str:
    """The short content version of a pair's render (part of its image key)."""
    return hashlib.sha256(f"{person_key}|{garment_key}|{model_key}".encode()).hexdigest()[:12]


def render_key(category: str, person_id: str, garment_id: str, version: str, ext: str,
               prefix: str = "renders") -> str:
    """``renders/CAT/PERSON/GARMENT-VERSION.EXT``: ids sanitised, never outside the job root."""
    tail = f"-{version}" if version else ""
    key = f"{prefix}/{sanitize_id(category)}/{sanitize_id(person_id)}/{sanitize_id(garment_id)}{tail}.{ext}"
    if any(p in ("", ".", "..") for p in key.split("/")):   # sanitize_id guarantees this
        raise ValueError(f"unsafe output key {key!r}")
    return key


def unit_key(unit_id: int) -> str:
    return f"scores/unit-{unit_id:05d}.parquet"


def unit_id_of(key: str) -> int:
    return int(key.rsplit("unit-", 1)[1].split(".")[0])


def error_reason(error: Optional[str]) -> str:
    """The first line of an error message: what a marker or a part counts errors by."""
    return (error or "(no message)").strip().splitlines()[0][:300] if error else "(no message)"


def unit_counts(flags: Iterable[str], errors: Iterable[Optional[str]]) -> dict[str, Any]:
    """What a unit's done-marker carries so that nobody has to read its score file again."""
    counts = {f: 0 for f in FLAGS}
    transient = 0
    reasons: Counter[str] = Counter()
    for f, e in zip(flags, errors):
        counts[f] = counts.get(f, 0) + 1
        if f == "error":
            reasons[error_reason(e)] += 1
            transient += (e or "").startswith(TRANSIENT_PREFIX)
    return {"counts": counts, "transient_errors": transient,
            "error_reasons": dict(reasons.most_common(ERROR_REASONS_KEPT))}


def _bucket_of(garment_id: str, buckets: int) -> int:
    return zlib.crc32(garment_id.encode("utf-8")) % buckets


def buckets_for(pairs: int) -> int:
    """A power of two near ``pairs / ROWS_PER_BUCKET`` (1 … MAX_BUCKETS)."""
    b = 1
    while b < MAX_BUCKETS and b * ROWS_PER_BUCKET < pairs:
        b *= 2
    return b


def bucket_column(garment_ids: pa.Array | pa.ChunkedArray, buckets: int):
    """The index bucket of each row (numpy int array), computed once per distinct garment."""
    import numpy as np

    enc = pc.dictionary_encode(garment_ids)
    if isinstance(enc, pa.ChunkedArray):
        enc = enc.combine_chunks() if enc.num_chunks else pa.array([], pa.dictionary(pa.int32(), pa.string()))
    values = enc.dictionary.to_pylist()
    per_value = np.array([_bucket_of(v, buckets) for v in values], dtype=np.int32)
    idx = enc.indices.to_numpy(zero_copy_only=False)
    return per_value[idx] if len(values) else np.zeros(len(idx), dtype=np.int32)


class JobFolder:
    """One render job's storage, with the operations every stage needs on it."""

    def __init__(self, root: str, s3: S3Settings | None = None, storage: Storage | None = None):
        self.storage = storage or Storage(root, s3)
        self.root = self.storage.root

    def url(self, key: str) -> str:
        return self.storage.url(key)

    # --- job.json / summaries -----------------------------------------------------------------
    def read_json(self, key: str, default: Any = None) -> Any:
        """``key``'s JSON, or ``default`` when it does not exist (one GET, no HEAD before it)."""
        try:
            return self.storage.read_json(key)
        except FileNotFoundError:
            return default

    def meta(self) -> dict:
        return self.read_json("job.json", {})

    def summary(self) -> dict:
        return self.read_json("summary.json", {})

    def write_summary(self, run_id: str, summary: dict) -> None:
        self.storage.write_json(f"runs/{run_id}.json", summary)
        self.storage.write_json("summary.json", summary)

    # --- the work area (the run in progress) --------------------------------------------------
    def run_state(self) -> Optional[dict]:
        return self.read_json("plan/run.json")

    def start_run(self, state: dict, units: pa.Table) -> None:
        """Write the units first, then ``plan/run.json``: the work area exists once both do."""
        self.write_units(units)
        self.storage.write_json("plan/run.json", state)

    def read_units(self) -> pa.Table:
        from infra.schema import UNITS

        try:
            return pq.read_table(io.BytesIO(self.storage.read_bytes("plan/units.parquet")))
        except FileNotFoundError:
            return UNITS.empty_table()

    def write_units(self, units: pa.Table) -> None:
        buf = io.BytesIO()
        pq.write_table(units, buf)
        self.storage.write_bytes("plan/units.parquet", buf.getvalue())

    def done_units(self) -> dict[int, dict]:
        """unit id → its done-marker (counts, seconds, ...), read in parallel."""
        keys = list(self.storage.iter_done("scores"))
        infos = self._parallel(lambda k: self.storage.read_json(f"{k}.done"), keys)
        return {unit_id_of(k): (info or {}) for k, info in zip(keys, infos)}

    def read_unit_scores(self, unit_ids: Iterable[int]) -> pa.Table:
        """The score rows of the given done units (this run's only: the work area is small)."""
        keys = [unit_key(u) for u in sorted(unit_ids)]
        tables = self._parallel(lambda k: pq.read_table(io.BytesIO(self.storage.read_bytes(k))), keys)
        return pa.concat_tables([t.cast(SCORES) for t in tables]) if tables else SCORES.empty_table()

    def clear_work_area(self) -> None:
        for key in ("scores", "plan"):
            self.storage.delete(key)

    # --- the index ----------------------------------------------------------------------------
    def index_manifest(self) -> dict:
        return self.read_json(f"{INDEX_PREFIX}/manifest.json", {})

    def index_parts(self, manifest: Optional[dict] = None) -> list[str]:
        m = self.index_manifest() if manifest is None else manifest
        return [p["key"] for _, p in sorted((m.get("parts") or {}).items(), key=lambda kv: int(kv[0]))]

    def read_index(self, columns: Optional[list[str]] = None, manifest: Optional[dict] = None) -> pa.Table:
        """The current index (only ``columns``), its parts read in parallel; empty if none yet."""
        parts = self.index_parts(manifest)
        dict_cols = [c for c in ("person_id", "garment_id", "category", "person_key", "garment_key", "model_key",
                                 "flag", "run_id") if columns is None or c in columns]

        def read(key: str) -> pa.Table:
            data = self.storage.read_bytes(key)
            return pq.read_table(io.BytesIO(data), columns=columns, read_dictionary=dict_cols)

        tables = self._parallel(read, parts)
        schema = pa.schema([INDEX.field(c) for c in columns]) if columns else INDEX
        if not tables:
            return schema.empty_table()
        return pa.concat_tables([t.cast(pa.schema([pa.field(f.name, f.type) for f in t.schema]))
                                 for t in tables], promote_options="permissive")

    def lookup(self, pairs: pa.Table, columns: list[str], manifest: Optional[dict] = None) -> pa.Table:
        """The index rows of ``pairs`` (person_id, garment_id), reading only the buckets they fall in."""
        import numpy as np

        m = self.index_manifest() if manifest is None else manifest
        parts = m.get("parts") or {}
        if not pairs.num_rows or not parts:
            return pa.schema([INDEX.field(c) for c in columns]).empty_table()
        ids = pa.schema([("person_id", pa.string()), ("garment_id", pa.string())])
        pairs = pairs.select(ids.names).cast(ids)
        buckets = bucket_column(pairs.column("garment_id"), int(m["buckets"]))
        wanted = sorted({int(b) for b in buckets} & {int(b) for b in parts})
        cols = list(dict.fromkeys(["person_id", "garment_id", *columns]))

        def read(b: int) -> pa.Table:
            t = pq.read_table(io.BytesIO(self.storage.read_bytes(parts[str(b)]["key"])), columns=cols)
            mine = pairs.filter(pa.array(np.asarray(buckets) == b))
            return t.join(mine, keys=["person_id", "garment_id"], join_type="inner").select(cols)

        tables = self._parallel(read, wanted)
        return pa.concat_tables(tables).select(columns) if tables else \
            pa.schema([INDEX.field(c) for c in columns]).empty_table()

    def commit_index(self, new_rows: pa.Table, drop: pa.Table, run_id: str, plan_pairs: int,
                     extra: Optional[dict] = None) -> dict:
        """Replace/insert ``new_rows`` and remove the ``drop`` pairs (person_id, garment_id); one
        manifest write commits the new generation. Untouched buckets keep their part files.

        Returns the new manifest.
        """
        old = self.index_manifest()
        buckets = int(old.get("buckets") or buckets_for(max(plan_pairs, new_rows.num_rows)))
        generation = int(old.get("generation", 0)) + 1
        new_rows = new_rows.select(INDEX.names).cast(INDEX)
        nb = bucket_column(new_rows.column("garment_id"), buckets) if new_rows.num_rows else []
        db = bucket_column(drop.column("garment_id"), buckets) if drop.num_rows else []
        touched = sorted(set(int(b) for b in nb) | set(int(b) for b in db))
        parts = {int(k): v for k, v in (old.get("parts") or {}).items()}

        def rewrite(b: int) -> tuple[int, Optional[dict]]:
            import numpy as np

            mine = new_rows.filter(pa.array(np.asarray(nb) == b)) if new_rows.num_rows else new_rows
            if b in parts:
                cur = pq.read_table(io.BytesIO(self.storage.read_bytes(parts[b]["key"]))).cast(INDEX)
                ids = pa.schema([("person_id", pa.string()), ("garment_id", pa.string())])
                gone = pa.concat_tables([
                    mine.select(ids.names).cast(ids),
                    drop.filter(pa.array(np.asarray(db) == b)).select(ids.names).cast(ids)
                    if drop.num_rows else ids.empty_table()])
                if gone.num_rows:
                    cur = cur.join(gone, keys=["person_id", "garment_id"], join_type="left anti")
                    cur = cur.select(INDEX.names).cast(INDEX)
                mine = pa.concat_tables([cur, mine])
            if mine.num_rows == 0:
                return b, None
            mine = mine.sort_by([("category", "ascending"), ("person_id", "ascending"),
                                 ("garment_id", "ascending")])
            key = f"{INDEX_PREFIX}/g{generation:05d}/bucket-{b:04d}.parquet"
            buf = io.BytesIO()
            pq.write_table(mine, buf, compression="zstd")
            self.storage.write_bytes(key, buf.getvalue())
            flags = mine.column("flag").to_pylist()
            errors = mine.column("error").to_pylist()
            info = unit_counts(flags, errors)
            return b, {"key": key, "rows": mine.num_rows, **info}

        for b, info in self._parallel(rewrite, touched):
            if info is None:
                parts.pop(b, None)
            else:
                parts[b] = info
        counts = {f: sum(p["counts"].get(f, 0) for p in parts.values()) for f in FLAGS}
        reasons: Counter[str] = Counter()
        for p in parts.values():
            reasons.update(p.get("error_reasons") or {})
        manifest = {
            "generation": generation, "buckets": buckets, "run_id": run_id,
            "committed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "rows": sum(p["rows"] for p in parts.values()), "counts": counts,
            "transient_errors": sum(p.get("transient_errors", 0) for p in parts.values()),
            "error_reasons": dict(reasons.most_common(ERROR_REASONS_KEPT)),
            "parts": {str(b): parts[b] for b in sorted(parts)}, **(extra or {}),
        }
        self.storage.write_json(f"{INDEX_PREFIX}/manifest.json", manifest)
        self._collect_index(manifest, old)
        return manifest

    def _collect_index(self, new: dict, old: dict) -> None:
        """Delete part files that neither the new nor the previous manifest names (a reader that
        opened the previous generation still finds its files)."""
        keep = {p["key"] for m in (new, old) for p in (m.get("parts") or {}).values()}
        for key in self.storage.list(INDEX_PREFIX, ".parquet"):
            if key not in keep:
                self.storage.delete(key)
        for key in self.storage.list(INDEX_PREFIX, ".json"):
            if key != f"{INDEX_PREFIX}/manifest.json":
                self.storage.delete(key)

    # --- change lists ---------------------------------------------------------------------------
    def write_changes(self, run_id: str, table: pa.Table) -> str:
        key = f"changes/{run_id}.parquet"
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        self.storage.write_bytes(key, buf.getvalue())
        return key

    def change_lists(self) -> list[str]:
        """Every run's change list, oldest first (run ids sort by time)."""
        return self.storage.list("changes", ".parquet")

    def read_changes(self, run_id: Optional[str] = None, columns: Optional[list[str]] = None) -> pa.Table:
        """One run's change list (default: the last run's)."""
        from infra.schema import CHANGES

        if run_id is None:
            lists = self.change_lists()
            if not lists:
                return CHANGES.empty_table()
            key = lists[-1]
        else:
            key = f"changes/{run_id}.parquet"
        return pq.read_table(io.BytesIO(self.storage.read_bytes(key)), columns=columns)

    # --- helpers --------------------------------------------------------------------------------
    def _parallel(self, fn, items: list) -> list:
        if len(items) <= 1:
            return [fn(i) for i in items]
        with ThreadPoolExecutor(max_workers=min(READ_THREADS, len(items)), thread_name_prefix="job-io") as ex:
            return list(ex.map(fn, items))


def new_run_id() -> str:
    """Sortable by time, unique across hosts."""
    import uuid

    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def json_digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]
