"""A whole procedural catalogue on disk, in the plain-manifest layout that
``gpvton preprocess --input manifest:OUT/...`` reads (``gpvton demo``'s catalogue).

Layout written under ``out_dir`` (paths in the CSVs are relative to ``out_dir``)::

    garments.csv   garment_id,image,category,mask,parts
    persons.csv    person_id,image,categories,keypoints,parsing,densepose,worn_garment_id
    garments/ID.png  ID_mask.png ({0,255})  ID_parts.png (0..3)
    persons/ID.png   ID_parsing.png (0..28)  ID_densepose.png (0..24)  ID_keypoints.json
    meta.json      generator version, seed, size, per-item attributes (style, tucked, ...)

``categories`` lists the garment categories a photo can take, separated by ``;`` (the worn
garment's category first). Every person wears a catalogue garment, so each (person, worn garment)
is a true pair. One generator drives everything in a fixed order: the same arguments always give
byte-identical files.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from gpvton_core.conditions.labels import CATEGORIES
from pipelines.synthetic.garments import STYLES, Garment, make_garment
from pipelines.synthetic.persons import make_person
from pipelines.synthetic.textures import TEXTURES

VERSION = "synthetic-1"
GARMENT_COLUMNS = ["garment_id", "image", "category", "mask", "parts"]
PERSON_COLUMNS = ["person_id", "image", "categories", "keypoints", "parsing", "densepose", "worn_garment_id"]


def save_png(arr: np.ndarray, path: Path) -> None:
    mode = "L" if arr.ndim == 2 else "RGB"
    Image.fromarray(arr, mode=mode).save(path, format="PNG", optimize=False)


def openpose_json(k: np.ndarray) -> dict[str, Any]:
    """BODY_25 keypoints as an OpenPose ``*_keypoints.json`` document."""
    return {"version": 1.3, "people": [{"person_id": [-1],
                                        "pose_keypoints_2d": [round(float(v), 3) for v in k.reshape(-1)]}]}


def _write_garments(rng: np.random.Generator, out: Path, n: int, H: int, W: int, meta: dict[str, Any]
                    ) -> tuple[list[Garment], list[str], list[dict[str, str]]]:
    """(garments, files written, CSV rows). Categories and styles cycle so that every kind appears
    (upper long/short/none, lower ×3, dresses ×3); the first garments take each texture once."""
    kinds = [(c, s) for c in CATEGORIES for s in STYLES[c]]
    order = [kinds[i] for i in rng.permutation(len(kinds))]
    garments: list[Garment] = []
    files: list[str] = []
    rows = []
    for i in range(n):
        cat, style = order[i % len(order)]
        tex = TEXTURES[int(rng.integers(len(TEXTURES)))] if i >= len(TEXTURES) else TEXTURES[i]
        gid = f"g{i:04d}"
        g = make_garment(rng, gid, cat, style, tex, H, W)
        garments.append(g)
        paths = {"image": f"garments/{gid}.png", "mask": f"garments/{gid}_mask.png",
                 "parts": f"garments/{gid}_parts.png"}
        save_png(g.image, out / paths["image"])
        save_png(g.mask, out / paths["mask"])
        save_png(g.parts, out / paths["parts"])
        files += [str(out / p) for p in paths.values()]
        rows.append({"garment_id": gid, "image": paths["image"], "category": cat,
                     "mask": paths["mask"], "parts": paths["parts"]})
        meta["garments"][gid] = {"category": cat, "style": style, "texture": tex}
    return garments, files, rows


def _write_persons(rng: np.random.Generator, out: Path, n: int, garments: list[Garment], H: int, W: int,
                   meta: dict[str, Any]) -> tuple[list[str], list[dict[str, str]]]:
    """(files written, CSV rows); person ``j`` wears garment ``j`` modulo the catalogue."""
    files: list[str] = []
    rows = []
    for j in range(n):
        g = garments[j % len(garments)]
        pid = f"p{j:04d}"
        p = make_person(rng, pid, g, H, W)
        paths = {"image": f"persons/{pid}.png", "parsing": f"persons/{pid}_parsing.png",
                 "densepose": f"persons/{pid}_densepose.png", "keypoints": f"persons/{pid}_keypoints.json"}
        save_png(p.image, out / paths["image"])
        save_png(p.parsing, out / paths["parsing"])
        save_png(p.densepose, out / paths["densepose"])
        (out / paths["keypoints"]).write_text(json.dumps(openpose_json(p.keypoints)))
        files += [str(out / q) for q in paths.values()]
        rows.append({"person_id": pid, "image": paths["image"], "categories": ";".join(p.categories),
                     "keypoints": paths["keypoints"], "parsing": paths["parsing"],
                     "densepose": paths["densepose"], "worn_garment_id": g.garment_id})
        meta["persons"][pid] = {"worn_garment_id": g.garment_id, **p.attrs}
    return files, rows


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)


def make_catalogue(out_dir: str | Path, n_garments: int = 12, n_persons: int = 12,
                   height: int = 512, width: int = 384, seed: int = 0) -> dict[str, Any]:
    """Write a synthetic paired catalogue under ``out_dir``; returns the paths written.

    Returns ``{"root", "garments_csv", "persons_csv", "meta", "garments": [...], "persons": [...]}``
    where the lists hold every file written (absolute paths). The same arguments always give
    byte-identical files.
    """
    if height < 32 or width < 24:
        raise ValueError(f"image size {height}x{width} is too small (minimum 32x24)")
    if n_garments < 1 or n_persons < 0:
        raise ValueError("n_garments must be >= 1 and n_persons >= 0")
    out = Path(out_dir)
    (out / "garments").mkdir(parents=True, exist_ok=True)
    (out / "persons").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    H, W = int(height), int(width)
    meta: dict[str, Any] = {"version": VERSION, "seed": seed, "height": H, "width": W,
                            "garments": {}, "persons": {}}
    garments, files_g, rows_g = _write_garments(rng, out, n_garments, H, W, meta)
    files_p, rows_p = _write_persons(rng, out, n_persons, garments, H, W, meta)
    gcsv, pcsv = out / "garments.csv", out / "persons.csv"
    _write_csv(gcsv, GARMENT_COLUMNS, rows_g)
    _write_csv(pcsv, PERSON_COLUMNS, rows_p)
    (out / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
    return {"root": str(out), "garments_csv": str(gcsv), "persons_csv": str(pcsv),
            "meta": str(out / "meta.json"), "garments": files_g, "persons": files_p}
