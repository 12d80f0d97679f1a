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
import logging
import time
from typing import Any, Optional

from pydantic import Field

from pipelines.config import ConfigError, StorageURL, StrictModel, load_config, resolved
from pipelines.outcome import Outcome
from pipelines.report.gallery import build_views, compact_row, gallery_rows, page_files, render_prefix, views_manifest
from pipelines.report.gate import judge
from pipelines.report.index_page import render_index
from pipelines.report.ordering import RankedRows, job_thresholds, order_rows
from pipelines.report.scope import Scope, read_scope
from pipelines.report.statistics import histograms, score_stats
from pipelines.report.summary import category_counts, report_summary
from pipelines.report.tables import CSV_COLUMNS, RETIRED_COLUMNS, csv_bytes
from pipelines.report.thumbnails import make_thumbnails
from pipelines.report.writer import Writer

log = logging.getLogger("gpvton.report")


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



# --- the report, step by step ----------------------------------------------------------------------

def _open_job(cfg: ReportConfig):
    """The job folder and its ``job.json``; ConfigError when there is no render job at the URL."""
    from infra.jobfolder import JobFolder

    folder = JobFolder(cfg.job)
    meta = folder.read_json("job.json")
    if meta is None:
        raise ConfigError(f"no render job at {cfg.job} (job.json not found); pass the URL given to "
                          f"'gpvton render --output'")
    return folder, meta


def _thumbnail_rows(ranked: RankedRows, cfg: ReportConfig) -> list[int]:
    """The first ``thumb_pages`` pages of the worst-first order, and every fail / error row."""
    first_rows = cfg.thumb_pages * cfg.page_size
    return [i for i in range(ranked.n) if i < first_rows or ranked.flags[i] in ("fail", "error")]


def _write_gallery(writer: Writer, ranked: RankedRows, thumbs: dict, with_thumbs: set[int],
                   prefix: Optional[str], page_size: int) -> tuple[list[dict], list[dict]]:
    """Put every view's pages; returns (the views, the first page's tiles)."""
    row_json, first = gallery_rows(ranked, thumbs, with_thumbs, prefix, page_size)
    views = build_views(ranked.flags, ranked.categories, page_size)
    for key, data in page_files(views, row_json, page_size):
        writer.put(key, data)
    return views, first


def _write_tables(writer: Writer, ranked: RankedRows, scope: Scope) -> dict[str, list]:
    """Put ``pairs.csv`` (and ``retired.csv`` for a changes report); returns the retired rows' columns."""
    writer.put("pairs.csv", csv_bytes(CSV_COLUMNS, ranked.cols, ranked.n))
    retired = scope.retired
    rcols = {c: retired.column(c).to_pylist() for c in RETIRED_COLUMNS if c in retired.column_names}
    if scope.name == "changes":
        writer.put("retired.csv", csv_bytes(RETIRED_COLUMNS, rcols, retired.num_rows))
    return rcols


def build_report(cfg: ReportConfig) -> dict[str, Any]:
    """Write the report of ``cfg.job`` (see the module docstring); returns its ``summary.json``."""
    from infra.storage import Storage, join

    t0 = time.time()
    folder, meta = _open_job(cfg)
    job_summary = folder.summary()
    scope = read_scope(folder, job_summary, cfg.all)
    t_read = time.time() - t0
    out_url = cfg.out or join(cfg.job, "report", *(["all"] if cfg.all else []))
    out = Storage(out_url)
    listed = set(out.list())   # one listing: what a rerun may skip or must delete
    writer = Writer(out, listed, cfg.workers)
    thresholds = job_thresholds(meta)
    ranked = RankedRows(order_rows(scope.rows, thresholds))
    verdict = judge(ranked.flags, scope.planned, cfg.fail_limit, meta)

    chosen_idx = _thumbnail_rows(ranked, cfg)
    thumbs = make_thumbnails(folder.storage, out, [ranked.row(i) for i in chosen_idx], meta, cfg.thumb_height,
                             cfg.workers, listed)
    views, first = _write_gallery(writer, ranked, thumbs, set(chosen_idx), render_prefix(folder.root, out.root),
                                  cfg.page_size)
    hist = histograms(ranked.table, thresholds, writer.put)
    rcols = _write_tables(writer, ranked, scope)
    pages_written = len(writer.pending)
    deleted = writer.finish(("pages/", "hist/", "pairs.csv", "retired.csv"))

    categories = category_counts(ranked.categories, ranked.flags)
    stats = score_stats(ranked.table)
    summary = report_summary(
        verdict=verdict, scope=scope, ranked=ranked, retired=rcols, categories=categories, meta=meta,
        job_summary=job_summary, thresholds=thresholds, stats=stats,
        thumbnails={"rows": len(chosen_idx), "pages": cfg.thumb_pages, "made": thumbs["made"],
                    "deleted": thumbs["deleted"], "problems": thumbs["problems"][:20]},
        files={"written": writer.written, "pages_written": pages_written, "deleted": deleted},
        views=len(views), job_url=cfg.job, report_url=out_url, page_size=cfg.page_size)
    errors = [compact_row(i + 1, ranked.row(i), None, None)
              for i in range(ranked.n) if ranked.flags[i] == "error"][:cfg.max_error_list]
    html = render_index(summary, views_manifest(views, sorted(categories), cfg.page_size), first, errors, hist,
                        thresholds, stats,
                        all_link="all/index.html" if scope.name == "changes" and "all/index.html" in listed else None)
    out.write_json("summary.json", summary)
    out.write_json("config.json", resolved(cfg))
    out.write_bytes("index.html", html.encode("utf-8"))  # last: a complete report when it appears
    summary["seconds"] = time.time() - t0
    log.info("report (%s, %d pairs) written to %s in %.1fs (read %.1fs)", scope.name, ranked.n, out_url,
             summary["seconds"], t_read)
    return summary
