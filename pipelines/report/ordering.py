"""Worst first: the job's score thresholds, a row's severity against them, and the report's row order
(flag, then severity, category, person, garment) that every page, CSV and thumbnail choice follows."""

from __future__ import annotations

import math
from typing import Any

from pipelines.outcome import FLAGS
from pipelines.report.scope import SCORE_NAMES, finite

FLAG_ORDER = tuple(reversed(FLAGS))   # worst first


def job_thresholds(meta: dict) -> dict[str, dict[str, float]]:
    """``{score: {"warn": x, "fail": y}}``: the render config's thresholds, as ``job.json`` records them."""
    raw = (meta.get("config") or {}).get("thresholds") or {}
    out: dict[str, dict[str, float]] = {}
    for name, value in raw.items() if isinstance(raw, dict) else []:
        if isinstance(value, dict):
            levels = {k: float(v) for k, v in value.items()
                      if k in ("warn", "fail") and isinstance(v, (int, float))}
            if levels:
                out[str(name)] = levels
    return out


def _margin(v, t: dict[str, float]):
    if "fail" in t and "warn" in t:
        return (v - t["fail"]) / max(t["warn"] - t["fail"], 1e-6)
    if "fail" in t:
        return v - t["fail"]
    return v


def severity(row: dict, thresholds: dict[str, dict[str, float]]) -> float:
    """Within one flag, lower = worse: the smallest threshold-normalised margin of the scores
    (< 0 below fail, 0..1 between fail and warn, > 1 passing); raw score without thresholds."""
    margins = [_margin(row[n], thresholds.get(n, {})) for n in SCORE_NAMES if finite(row.get(n))]
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


class RankedRows:
    """The scope's rows in worst-first order, as Python columns (rank ``i + 1`` is row ``i``)."""

    def __init__(self, table) -> None:
        self.table = table
        self.n: int = table.num_rows
        self.names: list[str] = table.column_names
        self.cols: dict[str, list] = {c: table.column(c).to_pylist() for c in self.names}
        self.flags: list[str] = self.cols["flag"]
        self.categories: list[str] = self.cols["category"]

    def row(self, i: int) -> dict[str, Any]:
        return {c: self.cols[c][i] for c in self.names}
