"""Manifest folders: ``garments.{csv,jsonl,parquet}`` and/or ``persons.{...}``, one row per item."""

from __future__ import annotations

import io
import json
from typing import Any

from gpvton_core.conditions.labels import CATEGORIES
from infra.storage import S3Settings, join

from .common import InputFolder, ReaderError


def read_table(folder: InputFolder, url: str) -> list[dict]:
    """Rows of a CSV / JSONL / Parquet table (by extension) as dicts."""
    data = folder.read_bytes(url)
    if url.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.read_table(io.BytesIO(data)).to_pylist()
    if url.endswith(".jsonl"):
        return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
    import csv

    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))


def resolve_url(base: str, value: Any) -> str | None:
    """A table cell as a URL: absolute as given, relative under ``base``; empty / NaN → None."""
    if value is None:
        return None
    v = str(value).strip()
    if not v or v.lower() in ("nan", "none", "null"):
        return None
    if "://" in v or v.startswith("/"):
        return v
    return join(base, v)


def split_categories(value: Any) -> list[str] | None:
    """A ``categories`` cell (``;``- or ``,``-separated string, or a list) → names, None when empty."""
    if value is None:
        return None
    if isinstance(value, str):
        vals = [v for v in value.replace(",", ";").split(";") if v.strip()]
    else:
        vals = list(value)
    return [str(v).strip() for v in vals] or None


def read_manifest(root: str, s3: S3Settings | None = None, source: str = "manifest") -> list[dict]:
    """Garment and person rows; a row without id or image becomes an error item, and a person's
    ``worn_garment_id`` links the garment of that id in the same manifest."""
    folder = InputFolder(root, s3)
    files = folder.ls_files(folder.root)
    tables = {}
    for table in ("garments", "persons"):
        for ext in ("parquet", "jsonl", "csv"):
            if f"{table}.{ext}" in files:
                tables[table] = files[f"{table}.{ext}"]
                break
    if not tables:
        raise ReaderError(f"manifest: no garments.{{csv,jsonl,parquet}} or persons.* under {root}")
    items: list[dict] = []
    garment_rows = read_table(folder, tables["garments"]) if "garments" in tables else []
    garments_by_id: dict[str, dict] = {}
    for i, row in enumerate(garment_rows):
        gid = str(row.get("garment_id") or "").strip()
        uri = f"{tables['garments']}#{i + 1}"
        image = resolve_url(folder.root, row.get("image"))
        if not gid or image is None:
            items.append({"kind": "garment", "id": gid or f"<row {i + 1}>", "source_uri": uri,
                          "error": {"stage": "read", "reason": "manifest row needs garment_id and image"}})
            continue
        item = {"kind": "garment", "id": gid, "source": source, "source_uri": image, "image": image,
                "category": row.get("category"), "mask": resolve_url(folder.root, row.get("mask")),
                "parts": resolve_url(folder.root, row.get("parts"))}
        garments_by_id.setdefault(gid, item)
        items.append(item)
    person_rows = read_table(folder, tables["persons"]) if "persons" in tables else []
    for i, row in enumerate(person_rows):
        pid = str(row.get("person_id") or "").strip()
        uri = f"{tables['persons']}#{i + 1}"
        image = resolve_url(folder.root, row.get("image"))
        if not pid or image is None:
            items.append({"kind": "person", "id": pid or f"<row {i + 1}>", "source_uri": uri,
                          "error": {"stage": "read", "reason": "manifest row needs person_id and image"}})
            continue
        wid = row.get("worn_garment_id")
        wid = str(wid).strip() if wid not in (None, "") and str(wid).lower() != "nan" else None
        wg = None
        if wid and wid in garments_by_id:
            g = garments_by_id[wid]
            wg = {"image": g["image"], "mask": g["mask"], "category": g["category"]}
        items.append({
            "kind": "person", "id": pid, "source": source, "source_uri": image, "image": image,
            "categories": split_categories(row.get("categories")) or list(CATEGORIES),
            "categories_declared": bool(split_categories(row.get("categories"))),
            "keypoints": resolve_url(folder.root, row.get("keypoints")), "keypoints_format": "openpose",
            "keypoints_ref_hw": None, "parsing": resolve_url(folder.root, row.get("parsing")),
            "lip_parsing": resolve_url(folder.root, row.get("lip_parsing")),
            "atr_parsing": resolve_url(folder.root, row.get("atr_parsing")),
            "densepose": resolve_url(folder.root, row.get("densepose")),
            "densepose_rendered": resolve_url(folder.root, row.get("densepose_rendered")),
            "worn_garment_id": wid, "worn_garment": wg,
        })
    return items
