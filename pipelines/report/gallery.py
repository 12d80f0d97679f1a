"""The report's gallery: one compact tile per row, views (all, by flag, by category, both) over the
worst-first order, and their pages as small scripts (``pages/vK/pNNNNN.js``).

Pages are scripts (``gpvtonPage(...)``) rather than JSON so that they also load from ``file://``;
``index.html`` holds only the first page of the first view, never all rows. Every link is relative.
"""

from __future__ import annotations

import json
import math
from typing import Any, Optional

from pipelines.report.ordering import FLAG_ORDER, RankedRows
from pipelines.report.scope import SCORE_NAMES, finite


def _round(v: Any) -> Any:
    return round(float(v), 4) if finite(v) else None


def js_payload(obj: Any) -> str:
    """``obj`` as JSON safe to embed in a script (no ``</`` that would end it)."""
    text = json.dumps(obj, ensure_ascii=True, separators=(",", ":"))
    return text.replace("</", "<\\/")


def compact_row(rank: int, r: dict, thumbs: Optional[dict], render_link: Optional[str]) -> dict:
    """One gallery tile's data; ``thumbs`` None: a row without thumbnails (``th`` false)."""
    return {
        "n": rank, "p": r["person_id"], "g": r["garment_id"], "c": r["category"], "f": r["flag"],
        "r": r.get("reason"), "e": r.get("error"), "paired": bool(r.get("paired")), "ch": r.get("change"),
        "s": {k: _round(r.get(k)) for k in SCORE_NAMES if finite(r.get(k))},
        "th": thumbs is not None,
        "tp": thumbs["person"].get(r["person_id"]) if thumbs else None,
        "tg": thumbs["garment"].get(r["garment_id"]) if thumbs else None,
        "tt": thumbs["tryon"].get(r.get("output_key")) if thumbs else None, "o": render_link,
    }


def render_prefix(job_root: str, out_root: str) -> Optional[str]:
    """The relative path from the report folder up to the job root, if the report is inside the job."""
    job_root, out_root = job_root.rstrip("/"), out_root.rstrip("/")
    if not out_root.startswith(job_root + "/"):
        return None
    depth = len(out_root[len(job_root) + 1:].split("/"))
    return "../" * depth


def gallery_rows(ranked: RankedRows, thumbs: dict, with_thumbs: set[int], prefix: Optional[str],
                 page_size: int) -> tuple[list[str], list[dict]]:
    """(every row's tile serialised once, the tiles of the first page). Error rows have no render
    to link; a report outside the job folder links none."""
    row_json, first = [], []
    for i in range(ranked.n):
        r = ranked.row(i)
        link = f"{prefix}{r['output_key']}" if prefix and r.get("output_key") and r["flag"] != "error" else None
        row = compact_row(i + 1, r, thumbs if i in with_thumbs else None, link)
        if i < page_size:
            first.append(row)
        row_json.append(js_payload(row))
    return row_json, first


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
        vid = js_payload(v["id"])
        for i in range(v["pages"]):
            chunk = v["rows"][i * page_size:(i + 1) * page_size]
            body = f"gpvtonPage({vid},{i},[{','.join(row_json[j] for j in chunk)}]);\n"
            out.append((f"pages/{v['id']}/p{i:05d}.js", body.encode("utf-8")))
    return out


def views_manifest(views: list[dict], categories: list[str], page_size: int) -> dict[str, Any]:
    """What the page's script needs to page through the views (embedded in ``index.html``)."""
    return {"page_size": page_size, "flags": list(FLAG_ORDER), "categories": categories,
            "views": [{k: v[k] for k in ("id", "flag", "category", "count", "pages")} for v in views]}
