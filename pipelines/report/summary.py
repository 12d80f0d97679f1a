"""The report's ``summary.json``: the gate's verdict and counts over the scope, this run's changes,
the catalogue's counts (equal to render's ``summary.json`` and ``gpvton status``), per-category
counts, score statistics, the job's identity and what the report wrote."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from pipelines.report.gate import Verdict
from pipelines.report.ordering import FLAG_ORDER, RankedRows
from pipelines.report.scope import Scope

MAX_RETIRED_LIST = 50
JOB_KEYS = ("run_id", "model_key", "package_version", "model_note", "random_weights", "variant",
            "resolution", "created", "checkpoints")
RENDER_KEYS = ("pairs_per_second", "elapsed_seconds", "render_seconds", "units_lost", "exit_code")


def category_counts(cats: list[str], flags: list[str]) -> dict[str, dict[str, int]]:
    """``{category: {flag: n, ..., "total": n}}``."""
    categories: dict[str, dict[str, int]] = {}
    for (c, f), k in Counter(zip(cats, flags)).items():
        cat = categories.setdefault(c, {fl: 0 for fl in FLAG_ORDER} | {"total": 0})
        cat[f] = cat.get(f, 0) + k
        cat["total"] += k
    return categories


def _changes(scope: Scope, ranked: RankedRows) -> dict[str, int] | None:
    if scope.name != "changes":
        return None
    change_counts = Counter(ranked.cols.get("change") or [])
    return {"added": change_counts.get("added", 0), "updated": change_counts.get("updated", 0),
            "retired": scope.retired.num_rows}


def _composition(meta: dict) -> dict[str, Any]:
    """How the renders were composed (shown next to the scores: paste-back scores the delivered image)."""
    config = meta.get("config") or {}
    return {"composite": config.get("composite", "official"),
            "frame": (config.get("output_format") or {}).get("frame", "working"),
            "precision": (meta.get("precision") or {}).get("resolved", "fp32")}


def report_summary(*, verdict: Verdict, scope: Scope, ranked: RankedRows, retired: dict[str, list],
                   categories: dict[str, dict[str, int]], meta: dict, job_summary: dict, thresholds: dict,
                   stats: dict, thumbnails: dict[str, Any], files: dict[str, int], views: int,
                   job_url: str, report_url: str, page_size: int) -> dict[str, Any]:
    """The ``summary.json`` document (``retired``: the retired rows' columns; ``thumbnails``: rows,
    pages and what :func:`~pipelines.report.thumbnails.make_thumbnails` returned)."""
    n_retired = scope.retired.num_rows
    return {
        "success": verdict.success, **verdict.outcome.as_dict(),
        "scope": scope.name, "run_id": scope.run_id,
        "changes": _changes(scope, ranked),
        "retired": [{k: retired[k][i] for k in retired} for i in range(min(n_retired, MAX_RETIRED_LIST))],
        "catalogue": {k: v for k, v in scope.catalogue.as_dict().items() if k != "definitions"},
        "fail_limit": verdict.limit, "fail_limit_source": verdict.limit_source,
        "categories": categories,
        "job": {k: meta.get(k) for k in JOB_KEYS},
        "composition": _composition(meta),
        "job_url": job_url, "report_url": report_url,
        "render": {k: job_summary.get(k) for k in RENDER_KEYS if k in job_summary},
        "thresholds": thresholds, "scores": stats, "notes": scope.notes,
        "thumbnails": thumbnails,
        "files": files,
        "page_size": page_size, "views": views,
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
