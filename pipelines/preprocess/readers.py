"""Input readers: turn a dataset folder or a manifest into picklable item descriptions.

Readers only list files and read small index files (pair lists, manifest tables) in the driver;
the heavy reading and decoding happens in the Beam workers (``derive.py``). Every path is an
fsspec URL, so local folders and ``s3://`` buckets work alike.

Items are plain dicts:

* person: ``kind, id, source, source_uri, image, categories, keypoints, keypoints_format
  ("openpose" | "coco18"), keypoints_ref_hw (None = image size), parsing (29-label), lip_parsing,
  atr_parsing, densepose (grey index), densepose_rendered, worn_garment_id, worn_garment``
  (``{"image", "mask", "category"}`` of the worn garment, for ``pc_ratio``) — annotation entries
  are URLs or None;
* garment: ``kind, id, source, source_uri, image, category, mask, parts``;
* error: ``kind, id, source_uri, error: {stage, reason}`` (an item that cannot even be described,
  e.g. a manifest row without image; it becomes one error row).

Supported inputs (``KIND:URL``):

* ``vitonhd`` (also ``hrviton``): ``<root>/{train,test}/image|cloth|cloth-mask|image-parse-v3|
  openpose_json|image-densepose|densepose|parse-bytedance(_512)``, pairs ``<root>/{split}_pairs_paired.txt``;
* ``dresscode``: ``<root>/{upper_body,lower_body,dresses}/images/ID_0.jpg`` (person),
  ``ID_1.jpg`` (garment), ``keypoints/ID_2.json`` (COCO-18 at 384×512), ``label_maps/ID_4.png``,
  ``dense/ID_5.png``, ``image-densepose/ID_0.jpg``, pair lists ``*_pairs*.txt``;
* ``manifest``: a folder with ``garments.{csv,jsonl,parquet}`` and/or ``persons.{...}``;
* ``photos``: bare photos with no annotations (see :func:`read_photos`); every missing annotation
  is estimated, and the photo is framed around its subject.

In every kind, an item that carries some annotations keeps them; only the missing ones are
estimated (``derive.py``), and ``provenance`` records which were given and which estimated.
"""

from __future__ import annotations

import io
import json
import posixpath
from typing import Any, Iterable

from gpvton_core.conditions.labels import CATEGORIES
from infra.storage import S3Settings, filesystem, join, protocol

DRESSCODE_CATEGORIES = {"upper_body": "upper", "lower_body": "lower", "dresses": "dresses"}
CATEGORY_ALIASES = {"upper": "upper", "upper_body": "upper", "top": "upper", "tops": "upper",
                    "lower": "lower", "lower_body": "lower", "bottom": "lower", "bottoms": "lower",
                    "dresses": "dresses", "dress": "dresses"}
INPUT_KINDS = ("vitonhd", "hrviton", "dresscode", "manifest", "photos")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


class ReaderError(ValueError):
    """The input cannot be read at all (missing root, no items): a configuration problem."""


def normalize_category(value: Any) -> str | None:
    """Canonical category for an alias, or None when unknown."""
    if value is None:
        return None
    return CATEGORY_ALIASES.get(str(value).strip().lower())


class _FS:
    def __init__(self, root: str, s3: S3Settings | None):
        self.root = root.rstrip("/")
        self.fs = filesystem(root, s3)
        self.proto = protocol(root)

    def url(self, path: str) -> str:
        p = path.split("://", 1)[-1]
        if self.proto == "file":
            return p
        return f"{self.proto}://{p}"

    def _p(self, url: str) -> str:
        return url[len("file://"):] if url.startswith("file://") else url

    def ls_files(self, url: str) -> dict[str, str]:
        """name → URL of the files directly under ``url`` (empty when the folder is absent)."""
        try:
            entries = self.fs.ls(self._p(url), detail=True)
        except (FileNotFoundError, NotADirectoryError):
            return {}
        out = {}
        for e in entries:
            if e.get("type") == "file":
                name = posixpath.basename(e["name"].rstrip("/"))
                out[name] = self.url(e["name"])
        return out

    def ls_dirs(self, url: str) -> list[str]:
        """Names of the folders directly under ``url`` (sorted; empty when absent)."""
        try:
            entries = self.fs.ls(self._p(url), detail=True)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(posixpath.basename(e["name"].rstrip("/")) for e in entries if e.get("type") == "directory")

    def isdir(self, url: str) -> bool:
        try:
            return bool(self.fs.isdir(self._p(url)))
        except FileNotFoundError:
            return False

    def read_text(self, url: str) -> str:
        with self.fs.open(self._p(url), "rb") as fh:
            return fh.read().decode("utf-8")

    def read_bytes(self, url: str) -> bytes:
        with self.fs.open(self._p(url), "rb") as fh:
            return fh.read()


def _stem(name: str) -> str:
    return name.rsplit(".", 1)[0]


def _images(files: dict[str, str]) -> dict[str, str]:
    return {_stem(n): u for n, u in sorted(files.items()) if n.lower().endswith(IMAGE_EXTS)}


def _pairs(fs: _FS, url: str) -> list[tuple[str, str]]:
    try:
        text = fs.read_text(url)
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            out.append((_stem(parts[0]), _stem(parts[1])))
    return out


# --- VITON-HD / HR-VITON ------------------------------------------------------------------------
def read_vitonhd(root: str, s3: S3Settings | None = None, source: str = "vitonhd") -> list[dict]:
    fs = _FS(root, s3)
    splits = [s for s in ("train", "test") if fs.isdir(join(fs.root, s, "image"))]
    if not splits:
        raise ReaderError(f"vitonhd: no {root}/train/image or {root}/test/image folder")
    items: list[dict] = []
    for split in splits:
        base = join(fs.root, split)
        persons = _images(fs.ls_files(join(base, "image")))
        cloths = _images(fs.ls_files(join(base, "cloth")))
        cmasks = _images(fs.ls_files(join(base, "cloth-mask")))
        lip = _images(fs.ls_files(join(base, "image-parse-v3")))
        gp = _images(fs.ls_files(join(base, "parse-bytedance")))
        gp.update({k: v for k, v in _images(fs.ls_files(join(base, "parse-bytedance_512"))).items()
                   if k not in gp})
        dp_grey = _images(fs.ls_files(join(base, "densepose")))
        dp_rgb = _images(fs.ls_files(join(base, "image-densepose")))
        poses = {n[: -len("_keypoints.json")]: u for n, u in fs.ls_files(join(base, "openpose_json")).items()
                 if n.endswith("_keypoints.json")}
        worn = {p: g for p, g in _pairs(fs, join(fs.root, f"{split}_pairs_paired.txt"))}
        for gid, url in cloths.items():
            items.append({"kind": "garment", "id": gid, "source": source, "source_uri": url,
                          "image": url, "category": "upper", "mask": cmasks.get(gid), "parts": None})
        for pid, url in persons.items():
            wid = worn.get(pid, pid if pid in cloths else None)
            wg = None
            if wid is not None and wid in cloths:
                wg = {"image": cloths[wid], "mask": cmasks.get(wid), "category": "upper"}
            items.append({
                "kind": "person", "id": pid, "source": source, "source_uri": url, "image": url,
                "categories": ["upper"], "keypoints": poses.get(pid), "keypoints_format": "openpose",
                "keypoints_ref_hw": None, "parsing": gp.get(pid), "lip_parsing": lip.get(pid),
                "atr_parsing": None, "densepose": dp_grey.get(pid), "densepose_rendered": dp_rgb.get(pid),
                "worn_garment_id": wid if wg else None, "worn_garment": wg,
            })
    return items


# --- Dress Code ---------------------------------------------------------------------------------
def read_dresscode(root: str, s3: S3Settings | None = None, source: str = "dresscode") -> list[dict]:
    fs = _FS(root, s3)
    items: list[dict] = []
    found = False
    for folder, category in DRESSCODE_CATEGORIES.items():
        base = join(fs.root, folder)
        imgs = _images(fs.ls_files(join(base, "images")))
        if not imgs:
            continue
        found = True
        kps = {n[: -len("_2.json")]: u for n, u in fs.ls_files(join(base, "keypoints")).items()
               if n.endswith("_2.json")}
        labels = {_stem(n)[: -2]: u for n, u in fs.ls_files(join(base, "label_maps")).items()
                  if n.endswith("_4.png")}
        dense = {_stem(n)[: -2]: u for n, u in fs.ls_files(join(base, "dense")).items()
                 if n.endswith("_5.png")}
        dense_rgb = {_stem(n)[: -2]: u for n, u in fs.ls_files(join(base, "image-densepose")).items()
                     if _stem(n).endswith("_0")}
        gp = _images(fs.ls_files(join(base, "parse-bytedance")))
        worn: dict[str, str] = {}
        for name in sorted(fs.ls_files(base)):
            if name.endswith(".txt") and "pairs" in name and "unpaired" not in name:
                worn.update(_pairs(fs, join(base, name)))
        for stem, url in imgs.items():
            if stem.endswith("_1"):
                items.append({"kind": "garment", "id": stem, "source": source, "source_uri": url,
                              "image": url, "category": category, "mask": None, "parts": None})
        for stem, url in imgs.items():
            if not stem.endswith("_0"):
                continue
            base_id = stem[:-2]
            wid = worn.get(stem, f"{base_id}_1")
            wg = {"image": imgs[wid], "mask": None, "category": category} if wid in imgs else None
            items.append({
                "kind": "person", "id": stem, "source": source, "source_uri": url, "image": url,
                "categories": [category], "keypoints": kps.get(base_id), "keypoints_format": "coco18",
                "keypoints_ref_hw": [512, 384], "parsing": gp.get(stem), "lip_parsing": None,
                "atr_parsing": labels.get(base_id), "densepose": dense.get(base_id),
                "densepose_rendered": dense_rgb.get(base_id),
                "worn_garment_id": wid if wg else None, "worn_garment": wg,
            })
    if not found:
        raise ReaderError(f"dresscode: no {root}/<upper_body|lower_body|dresses>/images folder")
    return items


# --- manifest -----------------------------------------------------------------------------------
def _read_table(fs: _FS, url: str) -> list[dict]:
    data = fs.read_bytes(url)
    if url.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.read_table(io.BytesIO(data)).to_pylist()
    if url.endswith(".jsonl"):
        return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
    import csv

    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))


def _resolve(base: str, value: Any) -> str | None:
    if value is None:
        return None
    v = str(value).strip()
    if not v or v.lower() in ("nan", "none", "null"):
        return None
    if "://" in v or v.startswith("/"):
        return v
    return join(base, v)


def _categories(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        vals = [v for v in value.replace(",", ";").split(";") if v.strip()]
    else:
        vals = list(value)
    return [str(v).strip() for v in vals] or None


def read_manifest(root: str, s3: S3Settings | None = None, source: str = "manifest") -> list[dict]:
    fs = _FS(root, s3)
    files = fs.ls_files(fs.root)
    tables = {}
    for table in ("garments", "persons"):
        for ext in ("parquet", "jsonl", "csv"):
            if f"{table}.{ext}" in files:
                tables[table] = files[f"{table}.{ext}"]
                break
    if not tables:
        raise ReaderError(f"manifest: no garments.{{csv,jsonl,parquet}} or persons.* under {root}")
    items: list[dict] = []
    garment_rows = _read_table(fs, tables["garments"]) if "garments" in tables else []
    garments_by_id: dict[str, dict] = {}
    for i, row in enumerate(garment_rows):
        gid = str(row.get("garment_id") or "").strip()
        uri = f"{tables['garments']}#{i + 1}"
        image = _resolve(fs.root, row.get("image"))
        if not gid or image is None:
            items.append({"kind": "garment", "id": gid or f"<row {i + 1}>", "source_uri": uri,
                          "error": {"stage": "read", "reason": "manifest row needs garment_id and image"}})
            continue
        item = {"kind": "garment", "id": gid, "source": source, "source_uri": image, "image": image,
                "category": row.get("category"), "mask": _resolve(fs.root, row.get("mask")),
                "parts": _resolve(fs.root, row.get("parts"))}
        garments_by_id.setdefault(gid, item)
        items.append(item)
    person_rows = _read_table(fs, tables["persons"]) if "persons" in tables else []
    for i, row in enumerate(person_rows):
        pid = str(row.get("person_id") or "").strip()
        uri = f"{tables['persons']}#{i + 1}"
        image = _resolve(fs.root, row.get("image"))
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
            "categories": _categories(row.get("categories")) or list(CATEGORIES),
            "categories_declared": bool(_categories(row.get("categories"))),
            "keypoints": _resolve(fs.root, row.get("keypoints")), "keypoints_format": "openpose",
            "keypoints_ref_hw": None, "parsing": _resolve(fs.root, row.get("parsing")),
            "lip_parsing": _resolve(fs.root, row.get("lip_parsing")),
            "atr_parsing": _resolve(fs.root, row.get("atr_parsing")),
            "densepose": _resolve(fs.root, row.get("densepose")),
            "densepose_rendered": _resolve(fs.root, row.get("densepose_rendered")),
            "worn_garment_id": wid, "worn_garment": wg,
        })
    return items


# --- bare photos --------------------------------------------------------------------------------
PHOTO_TABLE_EXTS = (".csv", ".jsonl", ".parquet")
PERSON_ROLES = ("person", "persons", "model", "models")
GARMENT_ROLES = ("garment", "garments", "product", "products")


def _photo_person(pid: str, url: str, source: str, categories: list[str] | None, row: dict | None = None,
                  base: str | None = None) -> dict:
    row = row or {}
    ann = {k: _resolve(base, row.get(k)) if base is not None else None
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

    return sanitize_id(_stem(name))


def read_photos(root: str, s3: S3Settings | None = None, source: str = "photos") -> list[dict]:
    """Bare photos: a folder ``models/*.jpg`` (or ``models/<category>/*.jpg``, which restricts the
    categories) + ``garments/<category>/*.jpg``, or one table (CSV/JSONL/Parquet) with a row per
    photo: ``image`` (URL, relative to the table), ``kind`` (person/model or garment/product),
    ``category`` (garments; persons: optional ``categories``, ';'-separated), optional ``id``
    (default: the file name's stem) and optional annotation columns as in a manifest.

    Ids are the file stems made storage-safe. Every item is marked ``frame`` (crop/pad to the
    working 3:4 frame around the subject) and its missing annotations are estimated.
    """
    fs = _FS(root, s3)
    if fs.root.lower().endswith(PHOTO_TABLE_EXTS):
        return _read_photo_table(fs, fs.root, source)
    if not fs.isdir(fs.root):
        raise ReaderError(f"photos: {root} is neither a folder nor a .csv/.jsonl/.parquet table")
    items: list[dict] = []
    models = join(fs.root, "models")
    for name, url in _images(fs.ls_files(models)).items():
        items.append(_photo_person(_photo_id(name), url, source, None))
    for sub in fs.ls_dirs(models):
        cat = normalize_category(sub)
        for name, url in _images(fs.ls_files(join(models, sub))).items():
            if cat is None:
                items.append({"kind": "person", "id": _photo_id(name), "source_uri": url, "error": {
                    "stage": "read", "reason": f"models/{sub}/ is not a garment category; use "
                                               "upper, lower or dresses (or put the photo in models/)"}})
            else:
                items.append(_photo_person(_photo_id(name), url, source, [cat]))
    garments = join(fs.root, "garments")
    for name, url in _images(fs.ls_files(garments)).items():
        items.append({"kind": "garment", "id": _photo_id(name), "source_uri": url, "error": {
            "stage": "read", "reason": "garment photo outside a category folder; put it in "
                                       "garments/<upper|lower|dresses>/"}})
    for sub in fs.ls_dirs(garments):
        for name, url in _images(fs.ls_files(join(garments, sub))).items():
            items.append(_photo_garment(_photo_id(name), url, source, sub))
    if not items:
        for ext in PHOTO_TABLE_EXTS:
            for table in ("photos", "manifest", "catalogue"):
                if fs.ls_files(fs.root).get(table + ext):
                    return _read_photo_table(fs, join(fs.root, table + ext), source)
        raise ReaderError(f"photos: no models/*.jpg or garments/<category>/*.jpg under {root} "
                          "(nor a photos.csv table)")
    return items


def _read_photo_table(fs: _FS, url: str, source: str) -> list[dict]:
    try:
        rows = _read_table(fs, url)
    except FileNotFoundError:
        raise ReaderError(f"photos: table not found: {url}") from None
    base = posixpath.dirname(url) if fs.proto == "file" else url.rsplit("/", 1)[0]
    items: list[dict] = []
    for i, row in enumerate(rows):
        where = f"{url}#{i + 1}"
        image = _resolve(base, row.get("image"))
        role = str(row.get("kind") or row.get("role") or "").strip().lower()
        if image is None or role not in PERSON_ROLES + GARMENT_ROLES:
            items.append({"kind": "garment" if role in GARMENT_ROLES else "person",
                          "id": str(row.get("id") or f"<row {i + 1}>"), "source_uri": where,
                          "error": {"stage": "read", "reason": "photo row needs image and kind "
                                                               "(person/model or garment/product)"}})
            continue
        rid = str(row.get("id") or "").strip() or _photo_id(posixpath.basename(image))
        if role in PERSON_ROLES:
            cats = _categories(row.get("categories"))
            items.append(_photo_person(rid, image, source, cats, row, base))
        else:
            items.append(_photo_garment(rid, image, source, row.get("category"), _resolve(base, row.get("mask"))))
    return items


READERS = {"vitonhd": read_vitonhd, "hrviton": read_vitonhd, "dresscode": read_dresscode,
           "manifest": read_manifest, "photos": read_photos}


def parse_input(spec: str) -> tuple[str, str]:
    """``KIND:URL`` → (kind, url). URL may itself contain ``://``."""
    if ":" not in spec:
        raise ReaderError(f"input {spec!r} must look like KIND:URL with KIND in {INPUT_KINDS}")
    kind, url = spec.split(":", 1)
    kind = kind.strip().lower()
    if kind not in READERS:
        raise ReaderError(f"unknown input kind {kind!r}; choose from {', '.join(INPUT_KINDS)}")
    if not url:
        raise ReaderError(f"input {spec!r} has an empty URL")
    return kind, url


def read_inputs(inputs: Iterable[tuple[str, str]], s3: S3Settings | None = None) -> list[dict]:
    """All items of all inputs, in input order (duplicates are resolved by the pipeline)."""
    items: list[dict] = []
    for kind, url in inputs:
        source = "vitonhd" if kind == "hrviton" else kind
        items.extend(READERS[kind](url, s3, source=source))
    return items
