"""The report's CSV downloads: ``pairs.csv`` (every pair of the scope, worst first) and
``retired.csv`` (this run's retired pairs), safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
import math
from typing import Any

from pipelines.report.scope import SCORE_NAMES

CSV_COLUMNS = ("rank", "category", "person_id", "garment_id", "paired", "flag", "reason", "error",
               *SCORE_NAMES, "seconds", "change", "run_id", "output_key")
RETIRED_COLUMNS = ("category", "person_id", "garment_id", "flag", "output_key", "version")


def _csv_cell(v: Any) -> Any:
    # Spreadsheet formula injection: retailer ids are untrusted text.
    if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + v
    return "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else v


def csv_bytes(columns: tuple[str, ...], cols: dict[str, list], n: int) -> bytes:
    """``columns`` of ``n`` rows (``rank`` is 1..n; a missing column is empty) as CSV."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(columns)
    data = [range(1, n + 1) if c == "rank" else cols.get(c) or [None] * n for c in columns]
    for row in zip(*data):
        w.writerow([_csv_cell(v) for v in row])
    return buf.getvalue().encode("utf-8")
