"""Bare photos with no annotations: a ``models/`` + ``garments/<category>/`` folder or a photo table."""

from __future__ import annotations

import posixpath
from typing import Any

from gpvton_core.conditions.labels import CATEGORIES
from infra.storage import S3Settings, join

from .common import InputFolder, ReaderError, file_stem, images_by_stem, normalize_category
from .manifest import read_table, resolve_url, split_categories

PHOTO_TABLE_EXTS = (".csv", ".jsonl", ".parquet")
PERSON_ROLES = ("person", "persons", "model", "models")
GARMENT_ROLES = ("garment", "garments", "product", "products")


def _photo_person(pid: str, url: str, source: str, categories: list[str] | None, row: dict | None = None,
                  base: str | None = None) -> dict:
    row = row or {}
    ann = {k: resolve_url(base, row.get(k)) if base is not None else None
           for k in ("keypoints", "parsing", "lip_parsing", "atr_parsing", "densepose", "densepose_rendered")}
    return {"kind": "person", "id": pid, "source": source, "source_uri": url, "image": url,
            "categories": categories or list(CATEGORIES),
            "categories_declared": bool(categories), "keypoints_format": "openpose", "keypoints_ref_hw": None,
            **ann, "worn_garment_id": None, "worn_garment": None, "frame": True}


def _photo_garment(gid: str, url: str, source: str, category: Any, mask: str | None = None) -> dict:
    return {"kind": "garment", "id": gid, "source": source, "source_uri": url, "image": url,
            "category": category, "mask": mask, "parts": None, "frame": True}


def _photo_id(name: str) -> str:
    from infra.storage import sanitize_id

    return sanitize_id(file_stem(name))


def read_photos(root: str, s3: S3Settings | None = None, source: str = "photos") -> list[dict]:
    """Bare photos: a folder ``models/*.jpg`` (or ``models/<category>/*.jpg``, which restricts the
    categories) + ``garments/<category>/*.jpg``, or one table (CSV/JSONL/Parquet) with a row per
    photo: ``image`` (URL, relative to the table), ``kind`` (person/model or garment/product),
    ``category`` (garments; persons: optional ``categories``, ';'-separated), optional ``id``
    (default: the file name's stem) and optional annotation columns as in a manifest.

    Ids are the file stems made storage-safe. Every item is marked ``frame`` (crop/pad to the
    working 3:4 frame around the subject) and its missing annotations are estimated.
    """
    folder = InputFolder(root, s3)
    if folder.root.lower().endswith(PHOTO_TABLE_EXTS):
        return _read_photo_table(folder, folder.root, source)
    if not folder.isdir(folder.root):
        raise ReaderError(f"photos: {root} is neither a folder nor a .csv/.jsonl/.parquet table")
    items: list[dict] = []
    models = join(folder.root, "models")
    for name, url in images_by_stem(folder.ls_files(models)).items():
        items.append(_photo_person(_photo_id(name), url, source, None))
    for sub in folder.ls_dirs(models):
        cat = normalize_category(sub)
        for name, url in images_by_stem(folder.ls_files(join(models, sub))).items():
            if cat is None:
                items.append({"kind": "person", "id": _photo_id(name), "source_uri": url, "error": {
                    "stage": "read", "reason": f"models/{sub}/ is not a garment category; use "
                                               "upper, lower or dresses (or put the photo in models/)"}})
            else:
                items.append(_photo_person(_photo_id(name), url, source, [cat]))
    garments = join(folder.root, "garments")
    for name, url in images_by_stem(folder.ls_files(garments)).items():
        items.append({"kind": "garment", "id": _photo_id(name), "source_uri": url, "error": {
            "stage": "read", "reason": "garment photo outside a category folder; put it in "
                                       "garments/<upper|lower|dresses>/"}})
    for sub in folder.ls_dirs(garments):
        for name, url in images_by_stem(folder.ls_files(join(garments, sub))).items():
            items.append(_photo_garment(_photo_id(name), url, source, sub))
    if not items:
        for ext in PHOTO_TABLE_EXTS:
            for table in ("photos", "manifest", "catalogue"):
                if folder.ls_files(folder.root).get(table + ext):
                    return _read_photo_table(folder, join(folder.root, table + ext), source)
        raise ReaderError(f"photos: no models/*.jpg or garments/<category>/*.jpg under {root} "
                          "(nor a photos.csv table)")
    return items


def _read_photo_table(folder: InputFolder, url: str, source: str) -> list[dict]:
    try:
        rows = read_table(folder, url)
    except FileNotFoundError:
        raise ReaderError(f"photos: table not found: {url}") from None
    base = posixpath.dirname(url) if folder.proto == "file" else url.rsplit("/", 1)[0]
    items: list[dict] = []
    for i, row in enumerate(rows):
        where = f"{url}#{i + 1}"
        image = resolve_url(base, row.get("image"))
        role = str(row.get("kind") or row.get("role") or "").strip().lower()
        if image is None or role not in PERSON_ROLES + GARMENT_ROLES:
            items.append({"kind": "garment" if role in GARMENT_ROLES else "person",
                          "id": str(row.get("id") or f"<row {i + 1}>"), "source_uri": where,
                          "error": {"stage": "read", "reason": "photo row needs image and kind "
                                                               "(person/model or garment/product)"}})
            continue
        rid = str(row.get("id") or "").strip() or _photo_id(posixpath.basename(image))
        if role in PERSON_ROLES:
            cats = split_categories(row.get("categories"))
            items.append(_photo_person(rid, image, source, cats, row, base))
        else:
            items.append(_photo_garment(rid, image, source, row.get("category"), resolve_url(base, row.get("mask"))))
    return items
