"""``gpvton report``: a static, paginated QA report of a render job, worst pairs first.

    gpvton report --job URL [--out URL] [--page-size N] [--fail-limit F] [--thumb-height PX]
                  [--workers N]

Reads ``JOB/job.json``, ``JOB/summary.json``, the completed ``JOB/scores/unit-*.parquet`` files
(those with a ``.done`` marker), the renders and the shards named by the job's config (for the
person and garment pictures), and writes under ``--out`` (default ``JOB/report``)::

    index.html            summary, histograms, filters, gallery (first page inline), error list
    summary.json          success, counts, failed / unrendered fractions vs limit, thresholds, statistics
    pairs.csv             every pair: ids, category, flag, reason, error, scores, output key
    config.json           the resolved report config
    hist/SCORE.png        histogram of each score with its warn / fail thresholds
    thumbs/…              small JPEGs (person | garment | try-on), made once and reused on reruns
    pages/vK/pNNNNN.js    the gallery pages of view K (all / by flag / by category / both)

Every link is relative, so the folder works opened from disk (``file://``) or served from an
object store. Pages are small scripts (``gpvtonPage(...)``) rather than JSON so that they also
load from ``file://``; the page holds only the first gallery page, never all rows.

The report is the QA gate. Its counts are :class:`pipelines.outcome.Outcome`'s, the same as
render's ``summary.json``: failed = fail + error + missing (planned pairs without a score row);
``failed_fraction`` = failed / planned. The limit is ``--fail-limit``, else the job's
``config.max_failed_fraction``, else 0.05. Exit code 1 when the fraction exceeds the limit (the
report is written either way), 2 on a configuration error (e.g. no job at the URL).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import posixpath
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable, Optional

from pydantic import Field

from pipelines.config import ConfigError, StorageURL, StrictModel, load_config, resolved
from pipelines.outcome import Outcome

log = logging.getLogger("gpvton.report")

FLAG_ORDER = ("error", "fail", "warn", "ok")
SCORE_NAMES = ("warp_miou", "preserve_ssim", "ssim", "parse_miou")
DEFAULT_FAIL_LIMIT = 0.05
PERCENTILES = (5, 25, 50, 75, 95)
THUMBS_VERSION = 1


class ReportConfig(StrictModel):
    job: StorageURL = Field(..., description="render job URL (local folder or s3://bucket/prefix)")
    out: Optional[StorageURL] = Field(None, description="report folder; default JOB/report")
    page_size: int = Field(100, ge=1, le=5000)
    fail_limit: Optional[float] = Field(None, ge=0, le=1)
    thumb_height: int = Field(160, ge=16, le=1024)
    workers: int = Field(8, ge=1, le=64)
    max_error_list: int = Field(50, ge=0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--job", required=True, help="render job URL (folder or s3://…)")
    parser.add_argument("--out", help="report URL (default JOB/report)")
    parser.add_argument("--page-size", type=int, help="gallery tiles per page (default 100)")
    parser.add_argument("--fail-limit", type=float,
                        help="highest acceptable (fail+error+missing)/planned fraction; exit 1 above it "
                             "(default: the job's max_failed_fraction, else 0.05)")
    parser.add_argument("--thumb-height", type=int, help="thumbnail height in px (default 160)")
    parser.add_argument("--workers", type=int, help="threads for thumbnails and uploads (default 8)")
    parser.add_argument("--config", help="YAML/TOML/JSON file with the same keys")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key")


def run(args: argparse.Namespace) -> int:
    overrides = {"job": args.job, "out": getattr(args, "out", None),
                 "page_size": getattr(args, "page_size", None),
                 "fail_limit": getattr(args, "fail_limit", None),
                 "thumb_height": getattr(args, "thumb_height", None),
                 "workers": getattr(args, "workers", None)}
    cfg = load_config(ReportConfig, getattr(args, "config", None), overrides)
    if getattr(args, "set", None):
        cfg = load_config(ReportConfig, None, list(args.set), base=resolved(cfg))
    summary = build_report(cfg)
    outcome = Outcome(planned=summary["pairs"], counts=summary["counts"])
    code = 0 if summary["success"] else 1
    print(f"report: {summary['report_url']}/index.html")
    print(f"report: {outcome.counts_line()}; failed {summary['failed_fraction']:.4f} "
          f"(limit {summary['fail_limit']}) → {'PASSED' if summary['success'] else 'FAILED'}, exit {code}")
    return code


# --- reading the job ------------------------------------------------------------------------------

def _storage(url: str):
    from infra.storage import Storage

    return Storage(url)


def read_job(job_url: str) -> tuple[Any, dict, dict, list[dict], dict]:
    """(storage, job.json, summary.json or {}, score rows, info about score files)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    job = _storage(job_url)
    if not job.exists("job.json"):
        raise ConfigError(f"no render job at {job_url} (job.json not found); pass the URL given to "
                          f"'gpvton render --output'")
    meta = job.read_json("job.json")
    summary = job.read_json("summary.json") if job.exists("summary.json") else {}
    done = list(job.iter_done("scores"))
    all_files = [k for k in job.list("scores", ".parquet")]
    tables = []
    for key in done:
        tables.append(pq.read_table(io.BytesIO(job.read_bytes(key))))
    rows: list[dict] = pa.concat_tables(tables, promote_options="default").to_pylist() if tables else []
    info = {"score_files_done": len(done), "score_files_incomplete": len(set(all_files) - set(done))}
    return job, meta, summary, rows, info


def planned_pairs(job, meta: dict, summary: dict, scored: int) -> int:
    for value in (summary.get("pairs"), summary.get("pairs_total"), meta.get("pairs")):
        if isinstance(value, int) and value >= 0:
            return max(value, scored)
    if job.exists("plan/units.parquet"):
        import pyarrow.parquet as pq

        units = pq.read_table(io.BytesIO(job.read_bytes("plan/units.parquet")), columns=["pairs"])
        return max(sum(len(p) for p in units.column("pairs").to_pylist()), scored)
    return scored


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


def severity(row: dict, thresholds: dict[str, dict[str, float]]) -> float:
    """Within one flag, lower = worse: the smallest threshold-normalised margin of the scores
    (< 0 below fail, 0..1 between fail and warn, > 1 passing); raw score without thresholds."""
    margins = []
    for name in SCORE_NAMES:
        v = row.get(name)
        if not _finite(v):
            continue
        t = thresholds.get(name, {})
        if "fail" in t and "warn" in t:
            margins.append((v - t["fail"]) / max(t["warn"] - t["fail"], 1e-6))
        elif "fail" in t:
            margins.append(v - t["fail"])
        else:
            margins.append(v)
    return min(margins) if margins else math.inf


def order_rows(rows: list[dict], thresholds: dict) -> list[dict]:
    rank = {f: i for i, f in enumerate(FLAG_ORDER)}
    return sorted(rows, key=lambda r: (rank.get(r.get("flag"), -1), severity(r, thresholds),
                                       str(r.get("category")), str(r.get("person_id")),
                                       str(r.get("garment_id"))))


# --- statistics -------------------------------------------------------------------------------------

def score_stats(rows: list[dict]) -> dict[str, dict[str, Any]]:
    import numpy as np

    out = {}
    for name in SCORE_NAMES:
        vals = np.array([r[name] for r in rows if _finite(r.get(name))], dtype=np.float64)
        if vals.size == 0:
            out[name] = {"count": 0}
            continue
        pct = np.percentile(vals, PERCENTILES)
        out[name] = {"count": int(vals.size), "mean": float(vals.mean()), "std": float(vals.std()),
                     "min": float(vals.min()), "max": float(vals.max()),
                     **{f"p{p}": float(v) for p, v in zip(PERCENTILES, pct)}}
    return out


def histograms(rows: list[dict], thresholds: dict, out) -> dict[str, str]:
    """One PNG per score with data: ``{score: "hist/score.png"}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = {}
    for name in SCORE_NAMES:
        vals = [r[name] for r in rows if _finite(r.get(name))]
        if not vals:
            continue
        fig, ax = plt.subplots(figsize=(4.2, 2.6), dpi=100)
        lo, hi = min(0.0, min(vals)), max(1.0, max(vals))
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
        fig.savefig(buf, format="png")
        plt.close(fig)
        key = f"hist/{name}.png"
        out.write_bytes(key, buf.getvalue())
        keys[name] = key
    return keys


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


def _shard_images(shards_url: str, kind: str, id_col: str, wanted: set[str]) -> Iterable[tuple[str, bytes]]:
    """(id, image PNG bytes) for the wanted ids, one shard file at a time."""
    from infra.shards import ShardSet

    shards = ShardSet(shards_url)
    for key in shards.parts(kind):
        if not wanted:
            return
        t = shards.read_part(key, [id_col, "image_png"])
        for item_id, png in zip(t.column(0).to_pylist(), t.column(1).to_pylist()):
            if item_id in wanted:
                wanted.discard(item_id)
                yield item_id, png


def make_thumbnails(job, out, rows: list[dict], meta: dict, cfg: ReportConfig) -> dict[str, Any]:
    """Write person / garment / try-on thumbnails that do not exist yet; return their keys."""
    from infra.storage import sanitize_id

    stamp_key = "thumbs/stamp.json"
    stamp = {"version": THUMBS_VERSION, "height": cfg.thumb_height,
             "job": meta.get("fingerprint") or meta.get("config_hash") or meta.get("job_id")}
    existing: set[str] = set()
    if out.exists(stamp_key) and out.read_json(stamp_key) == stamp:
        existing = set(out.list("thumbs", ".jpg"))

    persons = {r["person_id"] for r in rows}
    garments = {r["garment_id"] for r in rows}
    pkey = {p: f"thumbs/person/{sanitize_id(p)}.jpg" for p in persons}
    gkey = {g: f"thumbs/garment/{sanitize_id(g)}.jpg" for g in garments}
    tkey: dict[tuple, str] = {}
    for r in rows:
        ok_key = r.get("output_key")
        if ok_key and r.get("flag") != "error":
            rel = ok_key.split("/", 1)[1] if ok_key.startswith("renders/") else ok_key
            tkey[(r["person_id"], r["garment_id"], r["category"])] = \
                "thumbs/tryon/" + posixpath.splitext(rel)[0] + ".jpg"

    problems: list[str] = []

    def put(key: str, data: bytes) -> Optional[str]:
        try:
            out.write_bytes(key, _thumb_jpeg(data, cfg.thumb_height))
            return key
        except Exception as exc:  # noqa: BLE001 - one broken image must not stop the report
            problems.append(f"{key}: {type(exc).__name__}: {exc}")
            return None

    render_of = {(r["person_id"], r["garment_id"], r["category"]): r["output_key"] for r in rows
                 if r.get("output_key") and r.get("flag") != "error"}

    def tryon(item: tuple[tuple, str]) -> Optional[str]:
        pair, key = item
        try:
            data = job.read_bytes(render_of[pair])
        except Exception as exc:  # noqa: BLE001 - a missing render shows as a blank tile
            problems.append(f"{render_of[pair]}: {type(exc).__name__}: {exc}")
            return None
        return put(key, data)

    made = {"person": 0, "garment": 0, "tryon": 0}
    with ThreadPoolExecutor(cfg.workers) as pool:
        todo = [(k, v) for k, v in tkey.items() if v not in existing]
        results = dict(zip([k for k, _ in todo], pool.map(tryon, todo)))
        made["tryon"] = sum(1 for v in results.values() if v)
        for k, v in tkey.items():
            if v not in existing and not results.get(k):
                tkey[k] = None  # type: ignore[assignment]
        shards_url = (meta.get("config") or {}).get("shards")
        for kind, id_col, keys in (("persons", "person_id", pkey), ("garments", "garment_id", gkey)):
            wanted = {i for i, k in keys.items() if k not in existing}
            written: set[str] = set()
            if wanted and not shards_url:
                problems.append(f"job.json names no shards: no {kind} thumbnails")
            elif wanted:
                chunk: list[tuple[str, bytes]] = []
                bound = cfg.workers * 4  # bounded: never hold a whole shard's images at once

                def flush() -> None:
                    written.update(k for k in pool.map(lambda kv: put(keys[kv[0]], kv[1]), chunk) if k)
                    chunk.clear()

                try:
                    for item in _shard_images(shards_url, kind, id_col, set(wanted)):
                        chunk.append(item)
                        if len(chunk) >= bound:
                            flush()
                    flush()
                except Exception as exc:  # noqa: BLE001 - shards moved or unreadable
                    problems.append(f"{kind} shards at {shards_url}: {type(exc).__name__}: {exc}")
            made[kind[:-1]] = len(written)
            for i in wanted:
                if keys[i] not in written:
                    keys[i] = None  # type: ignore[assignment]
    out.write_json(stamp_key, stamp)
    if problems:
        log.warning("report: %d thumbnails could not be made (first: %s)", len(problems), problems[0])
    return {"person": pkey, "garment": gkey, "tryon": tkey, "made": made, "problems": problems}


# --- pages ------------------------------------------------------------------------------------------

def _round(v: Any) -> Any:
    return round(float(v), 4) if _finite(v) else None


def compact_row(rank: int, r: dict, thumbs: dict, render_link: Optional[str]) -> dict:
    key = (r["person_id"], r["garment_id"], r["category"])
    return {
        "n": rank, "p": r["person_id"], "g": r["garment_id"], "c": r["category"], "f": r["flag"],
        "r": r.get("reason"), "e": r.get("error"), "paired": bool(r.get("paired")),
        "s": {k: _round(r.get(k)) for k in SCORE_NAMES if _finite(r.get(k))},
        "tp": thumbs["person"].get(r["person_id"]), "tg": thumbs["garment"].get(r["garment_id"]),
        "tt": thumbs["tryon"].get(key), "o": render_link,
    }


def _js_payload(obj: Any) -> str:
    text = json.dumps(obj, ensure_ascii=True, separators=(",", ":"))
    return text.replace("</", "<\\/")


def build_views(ranked: list[dict], page_size: int) -> list[dict]:
    """All rows, then by flag, by category and by flag × category (only non-empty views)."""
    cats = sorted({r["c"] for r in ranked})
    defs: list[tuple[Optional[str], Optional[str]]] = [(None, None)]
    defs += [(f, None) for f in FLAG_ORDER] + [(None, c) for c in cats]
    defs += [(f, c) for f in FLAG_ORDER for c in cats]
    views = []
    for flag, cat in defs:
        members = [r for r in ranked if (flag is None or r["f"] == flag) and (cat is None or r["c"] == cat)]
        if not members and (flag, cat) != (None, None):
            continue
        views.append({"id": f"v{len(views)}", "flag": flag, "category": cat, "rows": members,
                      "count": len(members), "pages": max(1, math.ceil(len(members) / page_size))})
    return views


def write_pages(out, views: list[dict], page_size: int, workers: int) -> None:
    jobs = []
    for v in views:
        for i in range(v["pages"]):
            chunk = v["rows"][i * page_size:(i + 1) * page_size]
            body = f"gpvtonPage({_js_payload(v['id'])},{i},{_js_payload(chunk)});\n"
            jobs.append((f"pages/{v['id']}/p{i:05d}.js", body.encode("utf-8")))
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda kv: out.write_bytes(*kv), jobs))


# --- CSV --------------------------------------------------------------------------------------------

CSV_COLUMNS = ("rank", "category", "person_id", "garment_id", "paired", "flag", "reason", "error",
               *SCORE_NAMES, "seconds", "unit_id", "output_key")


def _csv_cell(v: Any) -> Any:
    # Spreadsheet formula injection: retailer ids are untrusted text.
    if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + v
    return "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else v


def write_csv(out, ordered: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for i, r in enumerate(ordered, 1):
        w.writerow([_csv_cell(i if c == "rank" else r.get(c)) for c in CSV_COLUMNS])
    out.write_bytes("pairs.csv", buf.getvalue().encode("utf-8"))


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


def build_report(cfg: ReportConfig) -> dict[str, Any]:
    from infra.storage import join

    t0 = time.time()
    job, meta, job_summary, rows, info = read_job(cfg.job)
    out_url = cfg.out or join(cfg.job, "report")
    out = _storage(out_url)
    in_job = out_url.rstrip("/") == join(cfg.job, "report")
    thresholds = job_thresholds(meta)
    ordered = order_rows(rows, thresholds)
    outcome = Outcome.from_flags([r["flag"] for r in ordered],
                                 planned_pairs(job, meta, job_summary, len(ordered)))
    limit = cfg.fail_limit
    limit_source = "--fail-limit"
    if limit is None:
        job_limit = (meta.get("config") or {}).get("max_failed_fraction")
        limit, limit_source = ((float(job_limit), "job config max_failed_fraction")
                               if _finite(job_limit) else (DEFAULT_FAIL_LIMIT, "default"))
    success = outcome.failed_fraction <= limit

    thumbs = make_thumbnails(job, out, ordered, meta, cfg)
    ranked = []
    for i, r in enumerate(ordered, 1):
        link = f"../{r['output_key']}" if in_job and r.get("output_key") and r.get("flag") != "error" else None
        ranked.append(compact_row(i, r, thumbs, link))
    views = build_views(ranked, cfg.page_size)
    write_pages(out, views, cfg.page_size, cfg.workers)
    hist = histograms(ordered, thresholds, out)
    write_csv(out, ordered)

    categories: dict[str, dict[str, int]] = {}
    for r in ordered:
        c = categories.setdefault(r["category"], {f: 0 for f in FLAG_ORDER} | {"total": 0})
        c[r["flag"]] = c.get(r["flag"], 0) + 1
        c["total"] += 1
    stats = score_stats(ordered)
    summary = {
        "success": success, **outcome.as_dict(),
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
        "thresholds": thresholds, "scores": stats,
        "score_files": info, "thumbnails": {"made": thumbs["made"], "problems": thumbs["problems"][:20]},
        "page_size": cfg.page_size, "views": len(views),
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    manifest = {"page_size": cfg.page_size, "flags": list(FLAG_ORDER),
                "categories": sorted(categories),
                "views": [{k: v[k] for k in ("id", "flag", "category", "count", "pages")} for v in views]}
    html = _template().render(
        s=summary, views=manifest, first=views[0]["rows"][:cfg.page_size],
        errors=[r for r in ranked if r["f"] == "error"][:cfg.max_error_list],
        hist=hist, score_names=SCORE_NAMES, flags=FLAG_ORDER, in_job=in_job,
        thresholds=thresholds, stats=stats)
    out.write_json("summary.json", summary)
    out.write_json("config.json", resolved(cfg))
    out.write_bytes("index.html", html.encode("utf-8"))  # last: a complete report when it appears
    summary["seconds"] = time.time() - t0
    log.info("report written to %s in %.1fs", out_url, summary["seconds"])
    return summary
