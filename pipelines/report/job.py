"""``gpvton report``: a static, paginated QA report of a render catalogue, worst pairs first.

    gpvton report --job URL [--all] [--out URL] [--page-size N] [--thumb-pages K] [--fail-limit F]
                  [--thumb-height PX] [--workers N]

**Scope.** By default the report covers *this run's changes*: the added and updated pairs of the
last run's change list (``JOB/changes/RUN.parquet``, named by ``JOB/summary.json``), with its
retired pairs listed and counted apart. ``--all`` covers the whole catalogue (the index,
``JOB/index/``). It never reads the per-unit score files (they are only the last run's work area).

**The QA gate applies to the scope.** failed = fail + error + missing (:class:`pipelines.outcome.Outcome`),
``failed_fraction`` = failed / planned, where *planned* is this run's pairs to render (added +
updated + re-attempted, from ``summary.json``; missing = those without a row: a lost unit) or, with
``--all``, the catalogue's planned pairs. So the nightly gate judges tonight's changes — what is
about to be published — and ``--all`` gates the catalogue. The limit is ``--fail-limit``, else the
job's ``config.max_failed_fraction``, else 0.05. Exit 1 above it (the report is written either
way), 2 on a configuration error (e.g. no job at the URL). The ``catalogue`` block of the report's
``summary.json`` repeats the catalogue's counts from the index manifest, equal to render's
``summary.json`` and ``gpvton status``.

Output (``--out``, default ``JOB/report``; ``JOB/report/all`` with ``--all``)::

    index.html            summary, histograms, filters, gallery (first page inline), errors, retired pairs
    summary.json          success, scope counts / fractions vs limit, catalogue counts, thresholds, statistics
    pairs.csv             every pair of the scope: ids, category, flag, reason, error, scores, output key
    retired.csv           this run's retired pairs (default scope)
    config.json           the resolved report config
    files.json            content hash of every page / histogram / CSV written (a rerun skips equal ones)
    hist/SCORE.png        histogram of each score with its warn / fail thresholds
    thumbs/…              small JPEGs (person | garment | try-on), keyed by content version
    pages/vK/pNNNNN.js    the gallery pages of view K (all / by flag / by category / both)

**Thumbnails only where a reviewer looks first**: the rows of the first ``--thumb-pages`` pages of
the worst-first order and every fail / error row; other rows link to their render. Try-on thumbnails
are keyed by the render's content-versioned key, person / garment ones by the content key of the
photo, so a rerun makes only what is new and deletes thumbnails no row uses any more. A page, a
histogram or the CSV is written only when its bytes changed (``files.json``); pages beyond the new
page count are deleted. Object-store reads go through a thread pool, read only the needed columns
and never probe with a HEAD first.

Every link is relative, so the folder works opened from disk (``file://``) or served from an
object store. Pages are small scripts (``gpvtonPage(...)``) rather than JSON so that they also
load from ``file://``; the page holds only the first gallery page, never all rows.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import logging
import math
import posixpath
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from pydantic import Field

from pipelines.config import ConfigError, StorageURL, StrictModel, load_config, resolved
from pipelines.outcome import FLAGS, Outcome

log = logging.getLogger("gpvton.report")

FLAG_ORDER = tuple(reversed(FLAGS))   # worst first
SCORE_NAMES = ("warp_miou", "preserve_ssim", "ssim", "parse_miou")
DEFAULT_FAIL_LIMIT = 0.05
PERCENTILES = (5, 25, 50, 75, 95)
THUMBS_VERSION = 2
#: index columns the report reads (never the whole row)
ROW_COLUMNS = ["person_id", "garment_id", "category", "paired", "output_key", *SCORE_NAMES, "flag", "reason",
               "error", "seconds", "person_key", "garment_key", "run_id"]
#: what the index adds to a change-list row (the change list lacks them)
JOINED_COLUMNS = ["paired", "seconds", "person_key", "garment_key", "run_id"]
MAX_RETIRED_LIST = 50


class ReportConfig(StrictModel):
    job: StorageURL = Field(..., description="render job URL (local folder or s3://bucket/prefix)")
    out: Optional[StorageURL] = Field(None, description="report folder; default JOB/report (JOB/report/all: --all)")
    all: bool = Field(False, description="the whole catalogue (the index) instead of the last run's changes")
    page_size: int = Field(100, ge=1, le=5000)
    thumb_pages: int = Field(3, ge=0, description="worst-first pages with thumbnails (fail/error rows always)")
    fail_limit: Optional[float] = Field(None, ge=0, le=1)
    thumb_height: int = Field(160, ge=16, le=1024)
    workers: int = Field(8, ge=1, le=64)
    max_error_list: int = Field(50, ge=0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--job", required=True, help="render job URL (folder or s3://…)")
    parser.add_argument("--all", action="store_true", default=None,
                        help="report (and gate) the whole catalogue, not only the last run's changes")
    parser.add_argument("--out", help="report URL (default JOB/report; JOB/report/all with --all)")
    parser.add_argument("--page-size", type=int, help="gallery tiles per page (default 100)")
    parser.add_argument("--thumb-pages", type=int,
                        help="worst-first pages that get thumbnails (default 3); fail/error rows always do")
    parser.add_argument("--fail-limit", type=float,
                        help="highest acceptable (fail+error+missing)/planned fraction of the scope; exit 1 above "
                             "it (default: the job's max_failed_fraction, else 0.05)")
    parser.add_argument("--thumb-height", type=int, help="thumbnail height in px (default 160)")
    parser.add_argument("--workers", type=int, help="threads for reads, thumbnails and writes (default 8)")
    parser.add_argument("--config", help="YAML/TOML/JSON file with the same keys")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key")


def run(args: argparse.Namespace) -> int:
    keys = ("out", "all", "page_size", "thumb_pages", "fail_limit", "thumb_height", "workers")
    overrides = {"job": args.job, **{k: getattr(args, k, None) for k in keys}}
    cfg = load_config(ReportConfig, getattr(args, "config", None), overrides)
    if getattr(args, "set", None):
        cfg = load_config(ReportConfig, None, list(args.set), base=resolved(cfg))
    summary = build_report(cfg)
    outcome = Outcome(planned=summary["pairs"], counts=summary["counts"])
    code = 0 if summary["success"] else 1
    what = "catalogue" if cfg.all else f"run {summary.get('run_id') or '?'} changes"
    print(f"report: {summary['report_url']}/index.html ({what})")
    print(f"report: {outcome.counts_line()}; failed {summary['failed_fraction']:.4f} "
          f"(limit {summary['fail_limit']}) → {'PASSED' if summary['success'] else 'FAILED'}, exit {code}")
    return code


# --- reading the job ------------------------------------------------------------------------------

def _storage(url: str):
    from infra.storage import Storage

    return Storage(url)


@dataclass
class Scope:
    """The rows a report covers, and what its gate counts them against."""

    name: str                       # "changes" or "all"
    run_id: Optional[str]
    rows: Any                       # pa.Table, ROW_COLUMNS (+ "change" for the changes scope)
    retired: Any                    # pa.Table of this run's retired pairs (empty for --all)
    planned: int
    catalogue: Outcome
    notes: list[str] = field(default_factory=list)


def catalogue_outcome(summary: dict, manifest: dict) -> Outcome:
    """The catalogue's counts: the index manifest's, over render's planned pairs (as summary.json)."""
    planned = summary.get("pairs")
    if not isinstance(planned, int):
        planned = manifest.get("plan_pairs") if isinstance(manifest.get("plan_pairs"), int) else manifest.get("rows", 0)
    return Outcome(planned=int(planned or 0), counts=dict(manifest.get("counts") or {}))


def read_scope(folder, summary: dict, all_pairs: bool, columns: list[str] = ROW_COLUMNS) -> Scope:
    """The index (``all_pairs``) or the last run's change list, joined with the index columns it lacks."""
    import pyarrow.compute as pc

    manifest = folder.index_manifest()
    catalogue = catalogue_outcome(summary, manifest)
    if all_pairs:
        rows = folder.read_index(columns=columns, manifest=manifest) if manifest else _empty(columns)
        return Scope("all", manifest.get("run_id"), rows, _empty(["person_id"]), catalogue.planned, catalogue)
    from infra.schema import CHANGES

    notes: list[str] = []
    if summary.get("run_id"):
        run_id, key = summary["run_id"], summary.get("change_list")
        ch = summary.get("changes") or {}
        planned = sum(int(ch.get(k) or 0) for k in ("added", "updated", "retried"))
    else:   # no summary (a run that stopped before its end): the newest change list
        lists = folder.change_lists()
        key = lists[-1] if lists else None
        run_id = posixpath.basename(key)[:-len(".parquet")] if key else None
        planned = 0
    changes = CHANGES.empty_table()
    if key:
        try:
            changes = folder.read_changes(run_id=posixpath.basename(key)[:-len(".parquet")])
        except FileNotFoundError:
            notes.append(f"change list {key} not found")
    change = changes.column("change")
    retired = changes.filter(pc.equal(change, "retired"))
    current = changes.filter(pc.not_equal(change, "retired"))
    rows = _join_index(folder, manifest, current, [c for c in JOINED_COLUMNS if c in columns])
    rows = rows.select([c for c in columns if c in rows.column_names] + ["change"])
    return Scope("changes", run_id, rows, retired, max(planned, rows.num_rows), catalogue, notes)


def _empty(columns: list[str]):
    import pyarrow as pa

    from infra.schema import INDEX

    return pa.schema([INDEX.field(c) for c in columns]).empty_table()


def _join_index(folder, manifest: dict, changes, columns: list[str]):
    """``changes`` with ``columns`` of their index rows, reading only the index parts of their buckets."""
    import pyarrow as pa

    from infra.jobfolder import bucket_column

    parts = manifest.get("parts") or {}
    if changes.num_rows and parts and columns:
        buckets = {int(b) for b in bucket_column(changes.column("garment_id"), int(manifest.get("buckets") or 1))}
        sub = {**manifest, "parts": {b: p for b, p in parts.items() if int(b) in buckets}}
        index = folder.read_index(columns=["person_id", "garment_id", *columns], manifest=sub)
        index = index.cast(pa.schema([pa.field(f.name, f.type.value_type if pa.types.is_dictionary(f.type)
                                               else f.type) for f in index.schema]))
        joined = changes.join(index, keys=["person_id", "garment_id"], join_type="left outer")
    else:   # no index (or nothing to join): the columns, empty
        joined = changes
        for f in _empty(columns).schema:
            joined = joined.append_column(f.name, pa.nulls(changes.num_rows, f.type))
    return joined


def job_thresholds(meta: dict) -> dict[str, dict[str, float]]:
    """``{score: {"warn": x, "fail": y}}`` from ``job.json`` (top-level or config thresholds)."""
    raw = meta.get("thresholds") or (meta.get("config") or {}).get("thresholds") or {}
    out: dict[str, dict[str, float]] = {}
    for name, value in raw.items() if isinstance(raw, dict) else []:
        if isinstance(value, dict):
            levels = {k: float(v) for k, v in value.items()
                      if k in ("warn", "fail") and isinstance(v, (int, float))}
            if levels:
                out[str(name)] = levels
    return out


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _margin(v, t: dict[str, float]):
    if "fail" in t and "warn" in t:
        return (v - t["fail"]) / max(t["warn"] - t["fail"], 1e-6)
    if "fail" in t:
        return v - t["fail"]
    return v


def severity(row: dict, thresholds: dict[str, dict[str, float]]) -> float:
    """Within one flag, lower = worse: the smallest threshold-normalised margin of the scores
    (< 0 below fail, 0..1 between fail and warn, > 1 passing); raw score without thresholds."""
    margins = [_margin(row[n], thresholds.get(n, {})) for n in SCORE_NAMES if _finite(row.get(n))]
    return min(margins) if margins else math.inf


def severities(rows, thresholds: dict[str, dict[str, float]]):
    """:func:`severity` of every row of an Arrow table, as one numpy array (inf: no score)."""
    import numpy as np

    sev = np.full(rows.num_rows, np.inf)
    for name in SCORE_NAMES:
        if name in rows.column_names:
            v = rows.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
            m = _margin(v, thresholds.get(name, {}))
            sev = np.where(np.isfinite(m), np.minimum(sev, m), sev)
    return sev


def order_rows(rows, thresholds: dict):
    """Worst first: flag (error, fail, warn, ok), then severity, category, person, garment."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    rank = {f: i for i, f in enumerate(FLAG_ORDER)}
    flags = rows.column("flag").to_pylist()
    keys = pa.table({"rank": pa.array(np.array([rank.get(f, -1) for f in flags], dtype=np.int8)),
                     "sev": pa.array(severities(rows, thresholds)),
                     **{c: rows.column(c).cast(pa.string()) for c in ("category", "person_id", "garment_id")}})
    order = pc.sort_indices(keys, [(k, "ascending") for k in keys.column_names])
    return rows.take(order)


# --- statistics -------------------------------------------------------------------------------------

def _scores(rows, name: str):
    import numpy as np

    if name not in rows.column_names:
        return np.zeros(0)
    v = rows.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
    return v[np.isfinite(v)]


def score_stats(rows) -> dict[str, dict[str, Any]]:
    import numpy as np

    out = {}
    for name in SCORE_NAMES:
        vals = _scores(rows, name)
        if vals.size == 0:
            out[name] = {"count": 0}
            continue
        pct = np.percentile(vals, PERCENTILES)
        out[name] = {"count": int(vals.size), "mean": float(vals.mean()), "std": float(vals.std()),
                     "min": float(vals.min()), "max": float(vals.max()),
                     **{f"p{p}": float(v) for p, v in zip(PERCENTILES, pct)}}
    return out


def histograms(rows, thresholds: dict, put: Callable[[str, bytes], None]) -> dict[str, str]:
    """One PNG per score with data: ``{score: "hist/score.png"}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = {}
    for name in SCORE_NAMES:
        vals = _scores(rows, name)
        if not vals.size:
            continue
        fig, ax = plt.subplots(figsize=(4.2, 2.6), dpi=100)
        lo, hi = min(0.0, float(vals.min())), max(1.0, float(vals.max()))
        ax.hist(vals, bins=40, range=(lo, hi), color="#4c72b0", edgecolor="white", linewidth=0.3)
        t = thresholds.get(name, {})
        for level, colour in (("warn", "#dd8452"), ("fail", "#c44e52")):
            if level in t:
                ax.axvline(t[level], color=colour, linestyle="--", linewidth=1.4,
                           label=f"{level} < {t[level]:g}")
        if t:
            ax.legend(fontsize=7, loc="upper left")
        ax.set_title(f"{name} (n={len(vals)})", fontsize=9)
        ax.set_xlabel("score (higher is better)", fontsize=8)
        ax.set_ylabel("pairs", fontsize=8)
        ax.tick_params(labelsize=7)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", metadata={"Software": None})
        plt.close(fig)
        key = f"hist/{name}.png"
        put(key, buf.getvalue())
        keys[name] = key
    return keys


# --- writing only what changed ------------------------------------------------------------------------

class Writer:
    """Writes report files whose bytes changed since the last report (``files.json`` holds their
    hashes), in parallel; deletes the listed files of a prefix that this report no longer has."""

    MANIFEST = "files.json"

    def __init__(self, out, listed: set[str], workers: int):
        self.out, self.listed, self.workers = out, listed, workers
        try:
            old = out.read_json(self.MANIFEST)
        except (FileNotFoundError, ValueError):
            old = {}
        self.old: dict[str, str] = old if isinstance(old, dict) else {}
        self.new: dict[str, str] = {}
        self.pending: list[tuple[str, bytes]] = []
        self.written = 0

    def put(self, key: str, data: bytes) -> None:
        digest = hashlib.sha256(data).hexdigest()[:24]
        self.new[key] = digest
        if self.old.get(key) != digest or key not in self.listed:
            self.pending.append((key, data))

    def flush(self) -> None:
        _parallel(lambda kv: self.out.write_bytes(*kv), self.pending, self.workers)
        self.written += len(self.pending)
        self.pending = []

    def finish(self, prefixes: tuple[str, ...]) -> int:
        """Write what is pending, delete stale files under ``prefixes``, save the hashes; returns deletions."""
        self.flush()
        stale = sorted(k for k in (self.listed | set(self.old)) if k.startswith(prefixes) and k not in self.new)
        _parallel(self.out.delete, stale, self.workers)
        self.out.write_json(self.MANIFEST, self.new)
        return len(stale)


def _parallel(fn: Callable, items: list, workers: int) -> list:
    if len(items) <= 1 or workers <= 1:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix="report-io") as ex:
        return list(ex.map(fn, items))


# --- thumbnails -----------------------------------------------------------------------------------

def _thumb_jpeg(data: bytes, height: int) -> bytes:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im = im.convert("RGB")
        w = max(1, round(im.width * height / im.height))
        im = im.resize((w, height), Image.BILINEAR, reducing_gap=2.0) if im.height > height else im
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=80, optimize=True)
        return buf.getvalue()


def tryon_thumb_key(output_key: str) -> str:
    """``thumbs/tryon/CAT/PERSON/GARMENT-VERSION.jpg``: the render's own content-versioned key."""
    rel = output_key.split("/", 1)[1] if output_key.startswith("renders/") else output_key
    return "thumbs/tryon/" + posixpath.splitext(rel)[0] + ".jpg"


def photo_thumb_key(kind: str, item_id: str, content_key: Optional[str]) -> str:
    """``thumbs/KIND/ID-HASH.jpg``: a new photo of the same id gets a new thumbnail."""
    from infra.storage import sanitize_id

    tail = f"-{hashlib.sha1(content_key.encode()).hexdigest()[:10]}" if content_key else ""
    return f"thumbs/{kind}/{sanitize_id(item_id)}{tail}.jpg"


def make_thumbnails(job, out, chosen: list[dict], meta: dict, cfg: ReportConfig, listed: set[str]) -> dict[str, Any]:
    """Write the person / garment / try-on thumbnails of the ``chosen`` rows that do not exist yet,
    delete the ones no chosen row uses; return their keys per row identity."""
    stamp_key = "thumbs/stamp.json"
    stamp = {"version": THUMBS_VERSION, "height": cfg.thumb_height}
    try:
        same = out.read_json(stamp_key) == stamp
    except (FileNotFoundError, ValueError):
        same = False
    present = {k for k in listed if k.startswith("thumbs/") and k.endswith(".jpg")}
    existing = present if same else set()

    pkey = {r["person_id"]: photo_thumb_key("person", r["person_id"], r.get("person_key")) for r in chosen}
    gkey = {r["garment_id"]: photo_thumb_key("garment", r["garment_id"], r.get("garment_key")) for r in chosen}
    tkey = {r["output_key"]: tryon_thumb_key(r["output_key"]) for r in chosen
            if r.get("output_key") and r.get("flag") != "error"}
    problems: list[str] = []

    def put(key: str, data: bytes) -> Optional[str]:
        try:
            out.write_bytes(key, _thumb_jpeg(data, cfg.thumb_height))
            return key
        except Exception as exc:  # noqa: BLE001 - one broken image must not stop the report
            problems.append(f"{key}: {type(exc).__name__}: {exc}")
            return None

    def tryon(item: tuple[str, str]) -> Optional[str]:
        render, key = item
        try:
            data = job.read_bytes(render)   # no HEAD first: a missing render is the exception
        except Exception as exc:  # noqa: BLE001 - a missing render shows as a blank tile
            problems.append(f"{render}: {type(exc).__name__}: {exc}")
            return None
        return put(key, data)

    made = {"person": 0, "garment": 0, "tryon": 0}
    todo = [(r, k) for r, k in tkey.items() if k not in existing]
    done = set(k for k in _parallel(tryon, todo, cfg.workers) if k)
    made["tryon"] = len(done)
    tkey = {r: k for r, k in tkey.items() if k in existing or k in done}
    shards_url = (meta.get("config") or {}).get("shards")
    for kind, id_col, keys in (("persons", "person_id", pkey), ("garments", "garment_id", gkey)):
        wanted = {i: k for i, k in keys.items() if k not in existing}
        written: set[str] = set()
        if wanted and not shards_url:
            problems.append(f"job.json names no shards: no {kind} thumbnails")
        elif wanted:
            try:
                written = _shard_thumbnails(_storage(shards_url), kind, id_col, wanted, put, cfg.workers)
            except Exception as exc:  # noqa: BLE001 - shards moved or unreadable
                problems.append(f"{kind} shards at {shards_url}: {type(exc).__name__}: {exc}")
        made[kind[:-1]] = len(written)
        for i, k in list(keys.items()):
            if k not in existing and k not in written:
                keys[i] = None  # type: ignore[assignment]
    used = set(tkey.values()) | {k for k in pkey.values() if k} | {k for k in gkey.values() if k}
    stale = sorted(k for k in present if k not in used)
    _parallel(out.delete, stale, cfg.workers)
    out.write_json(stamp_key, stamp)
    if problems:
        log.warning("report: %d thumbnails could not be made (first: %s)", len(problems), problems[0])
    return {"person": pkey, "garment": gkey, "tryon": tkey, "made": made, "deleted": len(stale),
            "problems": problems}


def _shard_thumbnails(shards, kind: str, id_col: str, wanted: dict[str, str],
                      put: Callable[[str, bytes], Optional[str]], workers: int) -> set[str]:
    """Thumbnails of the wanted ids, shard files read in parallel; of each only the id column, then
    the image column of the row groups that hold a wanted id."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    ids = sorted(wanted)

    def one(key: str) -> list[str]:
        pf = pq.ParquetFile(io.BytesIO(shards.read_bytes(key)))
        made = []
        for g in range(pf.metadata.num_row_groups):
            got = pf.read_row_group(g, columns=[id_col]).column(0)
            hit = pc.is_in(got, value_set=pa.array(ids, got.type))
            if not pc.any(hit).as_py():
                continue
            t = pf.read_row_group(g, columns=[id_col, "image_png"]).filter(hit)
            for item, png in zip(t.column(0).to_pylist(), t.column(1).to_pylist()):
                k = put(wanted[item], png) if item in wanted else None
                if k:
                    made.append(k)
        return made

    from infra.shards import ShardSet

    parts = ShardSet(shards.root, storage=shards).parts(kind)    # the current generation, not a listing
    return {k for ks in _parallel(one, parts, workers) for k in ks}


# --- pages ------------------------------------------------------------------------------------------

def _round(v: Any) -> Any:
    return round(float(v), 4) if _finite(v) else None


def _js_payload(obj: Any) -> str:
    text = json.dumps(obj, ensure_ascii=True, separators=(",", ":"))
    return text.replace("</", "<\\/")


def compact_row(rank: int, r: dict, thumbs: Optional[dict], render_link: Optional[str]) -> dict:
    """One gallery tile's data; ``thumbs`` None: a row without thumbnails (``th`` false)."""
    return {
        "n": rank, "p": r["person_id"], "g": r["garment_id"], "c": r["category"], "f": r["flag"],
        "r": r.get("reason"), "e": r.get("error"), "paired": bool(r.get("paired")), "ch": r.get("change"),
        "s": {k: _round(r.get(k)) for k in SCORE_NAMES if _finite(r.get(k))},
        "th": thumbs is not None,
        "tp": thumbs["person"].get(r["person_id"]) if thumbs else None,
        "tg": thumbs["garment"].get(r["garment_id"]) if thumbs else None,
        "tt": thumbs["tryon"].get(r.get("output_key")) if thumbs else None, "o": render_link,
    }


def build_views(flags: list[str], cats: list[str], page_size: int) -> list[dict]:
    """All rows, then by flag, by category and by flag × category (only non-empty views); each view
    holds the positions of its rows in the worst-first order."""
    import numpy as np

    f, c = np.array(flags, dtype=object), np.array(cats, dtype=object)
    present = sorted(set(cats))
    defs: list[tuple[Optional[str], Optional[str]]] = [(None, None)]
    defs += [(fl, None) for fl in FLAG_ORDER] + [(None, ca) for ca in present]
    defs += [(fl, ca) for fl in FLAG_ORDER for ca in present]
    views = []
    for flag, cat in defs:
        mask = np.ones(len(f), bool)
        if flag is not None:
            mask &= f == flag
        if cat is not None:
            mask &= c == cat
        members = np.flatnonzero(mask)
        if not len(members) and (flag, cat) != (None, None):
            continue
        views.append({"id": f"v{len(views)}", "flag": flag, "category": cat, "rows": members,
                      "count": int(len(members)), "pages": max(1, math.ceil(len(members) / page_size))})
    return views


def page_files(views: list[dict], row_json: list[str], page_size: int) -> list[tuple[str, bytes]]:
    """``pages/vK/pNNNNN.js`` of every view: each row serialised once, pages joined from them."""
    out = []
    for v in views:
        vid = _js_payload(v["id"])
        for i in range(v["pages"]):
            chunk = v["rows"][i * page_size:(i + 1) * page_size]
            body = f"gpvtonPage({vid},{i},[{','.join(row_json[j] for j in chunk)}]);\n"
            out.append((f"pages/{v['id']}/p{i:05d}.js", body.encode("utf-8")))
    return out


# --- CSV --------------------------------------------------------------------------------------------

CSV_COLUMNS = ("rank", "category", "person_id", "garment_id", "paired", "flag", "reason", "error",
               *SCORE_NAMES, "seconds", "change", "run_id", "output_key")
RETIRED_COLUMNS = ("category", "person_id", "garment_id", "flag", "output_key", "version")


def _csv_cell(v: Any) -> Any:
    # Spreadsheet formula injection: retailer ids are untrusted text.
    if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + v
    return "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else v


def csv_bytes(columns: tuple[str, ...], cols: dict[str, list], n: int, ranked: bool = True) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(columns)
    data = [range(1, n + 1) if c == "rank" else cols.get(c) or [None] * n for c in columns]
    for row in zip(*data):
        w.writerow([_csv_cell(v) for v in row])
    return buf.getvalue().encode("utf-8")


# --- the report -------------------------------------------------------------------------------------

def _template():
    from pathlib import Path

    from jinja2 import Environment, FileSystemLoader, select_autoescape

    # The template ships next to this module (package data "*.j2"). Autoescaping is on for every
    # template: catalogue ids and error messages come from retailers' files.
    env = Environment(loader=FileSystemLoader(str(Path(__file__).resolve().parent)),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      trim_blocks=True, lstrip_blocks=True)
    return env.get_template("index.html.j2")


def _render_prefix(job_root: str, out_root: str) -> Optional[str]:
    """The relative path from the report folder up to the job root, if the report is inside the job."""
    job_root, out_root = job_root.rstrip("/"), out_root.rstrip("/")
    if not out_root.startswith(job_root + "/"):
        return None
    depth = len(out_root[len(job_root) + 1:].split("/"))
    return "../" * depth


def fail_limit(cfg: ReportConfig, meta: dict) -> tuple[float, str]:
    if cfg.fail_limit is not None:
        return cfg.fail_limit, "--fail-limit"
    job_limit = (meta.get("config") or {}).get("max_failed_fraction")
    return (float(job_limit), "job config max_failed_fraction") if _finite(job_limit) else (DEFAULT_FAIL_LIMIT,
                                                                                            "default")


def build_report(cfg: ReportConfig) -> dict[str, Any]:
    from infra.jobfolder import JobFolder
    from infra.storage import join

    t0 = time.time()
    folder = JobFolder(cfg.job)
    meta = folder.read_json("job.json")
    if meta is None:
        raise ConfigError(f"no render job at {cfg.job} (job.json not found); pass the URL given to "
                          f"'gpvton render --output'")
    job_summary = folder.summary()
    scope = read_scope(folder, job_summary, cfg.all)
    t_read = time.time() - t0
    out_url = cfg.out or join(cfg.job, "report", *(["all"] if cfg.all else []))
    out = _storage(out_url)
    listed = set(out.list())   # one listing: what a rerun may skip or must delete
    writer = Writer(out, listed, cfg.workers)
    thresholds = job_thresholds(meta)
    ordered = order_rows(scope.rows, thresholds)
    n = ordered.num_rows
    cols = {c: ordered.column(c).to_pylist() for c in ordered.column_names}
    flags, cats = cols["flag"], cols["category"]
    counts = Counter(flags)
    outcome = Outcome(planned=max(scope.planned, n), counts={f: counts.get(f, 0) for f in FLAG_ORDER})
    limit, limit_source = fail_limit(cfg, meta)
    success = outcome.failed_fraction <= limit

    # thumbnails: the first thumb_pages pages of the worst-first order, and every fail / error row
    first_rows = cfg.thumb_pages * cfg.page_size
    chosen_idx = [i for i in range(n) if i < first_rows or flags[i] in ("fail", "error")]
    names = ordered.column_names
    chosen = [{c: cols[c][i] for c in names} for i in chosen_idx]
    thumbs = make_thumbnails(folder.storage, out, chosen, meta, cfg, listed)
    with_thumbs = set(chosen_idx)
    prefix = _render_prefix(folder.root, out.root)
    row_json, first = [], []
    for i in range(n):
        r = {c: cols[c][i] for c in names}
        link = f"{prefix}{r['output_key']}" if prefix and r.get("output_key") and r["flag"] != "error" else None
        row = compact_row(i + 1, r, thumbs if i in with_thumbs else None, link)
        if i < cfg.page_size:
            first.append(row)
        row_json.append(_js_payload(row))
    views = build_views(flags, cats, cfg.page_size)
    for key, data in page_files(views, row_json, cfg.page_size):
        writer.put(key, data)
    hist = histograms(ordered, thresholds, writer.put)
    writer.put("pairs.csv", csv_bytes(CSV_COLUMNS, cols, n))
    retired = scope.retired
    rcols = {c: retired.column(c).to_pylist() for c in RETIRED_COLUMNS if c in retired.column_names}
    if scope.name == "changes":
        writer.put("retired.csv", csv_bytes(RETIRED_COLUMNS, rcols, retired.num_rows))
    pages_written = len(writer.pending)
    deleted = writer.finish(("pages/", "hist/", "pairs.csv", "retired.csv"))

    categories: dict[str, dict[str, int]] = {}
    for (c, f), k in Counter(zip(cats, flags)).items():
        cat = categories.setdefault(c, {fl: 0 for fl in FLAG_ORDER} | {"total": 0})
        cat[f] = cat.get(f, 0) + k
        cat["total"] += k
    stats = score_stats(ordered)
    change_counts = Counter(cols.get("change") or [])
    summary = {
        "success": success, **outcome.as_dict(),
        "scope": scope.name, "run_id": scope.run_id,
        "changes": ({"added": change_counts.get("added", 0), "updated": change_counts.get("updated", 0),
                     "retired": retired.num_rows} if scope.name == "changes" else None),
        "retired": [{k: rcols[k][i] for k in rcols} for i in range(min(retired.num_rows, MAX_RETIRED_LIST))],
        "catalogue": {k: v for k, v in scope.catalogue.as_dict().items() if k != "definitions"},
        "fail_limit": limit, "fail_limit_source": limit_source,
        "categories": categories,
        "job": {k: meta.get(k) for k in ("job_id", "fingerprint", "config_hash", "package_version",
                                          "model_note", "random_weights", "variant", "resolution",
                                          "created", "checkpoints")},
        "composition": {"composite": (meta.get("config") or {}).get("composite", "official"),
                        "frame": ((meta.get("config") or {}).get("output_format") or {}).get("frame", "working"),
                        "precision": (meta.get("precision") or {}).get("resolved", "fp32")},
        "job_url": cfg.job, "report_url": out_url,
        "render": {k: job_summary.get(k) for k in ("pairs_per_second", "elapsed_seconds", "render_seconds",
                                                   "units_lost", "exit_code")
                   if k in job_summary},
        "thresholds": thresholds, "scores": stats, "notes": scope.notes,
        "thumbnails": {"rows": len(chosen_idx), "pages": cfg.thumb_pages, "made": thumbs["made"],
                       "deleted": thumbs["deleted"], "problems": thumbs["problems"][:20]},
        "files": {"written": writer.written, "pages_written": pages_written, "deleted": deleted},
        "page_size": cfg.page_size, "views": len(views),
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    manifest = {"page_size": cfg.page_size, "flags": list(FLAG_ORDER), "categories": sorted(categories),
                "views": [{k: v[k] for k in ("id", "flag", "category", "count", "pages")} for v in views]}
    errors = [compact_row(i + 1, {c: cols[c][i] for c in names}, None, None)
              for i in range(n) if flags[i] == "error"][:cfg.max_error_list]
    html = _template().render(
        s=summary, views=manifest, first=first, errors=errors, hist=hist, score_names=SCORE_NAMES,
        flags=FLAG_ORDER, thresholds=thresholds, stats=stats,
        all_link="all/index.html" if scope.name == "changes" and "all/index.html" in listed else None)
    out.write_json("summary.json", summary)
    out.write_json("config.json", resolved(cfg))
    out.write_bytes("index.html", html.encode("utf-8"))  # last: a complete report when it appears
    summary["seconds"] = time.time() - t0
    log.info("report (%s, %d pairs) written to %s in %.1fs (read %.1fs)", scope.name, n, out_url,
             summary["seconds"], t_read)
    return summary
