"""Test (and benchmark) fixtures built on the procedural catalogue of ``pipelines/synthetic/``:
preprocessed training shards, and a training batch read straight from a catalogue's files.

They live with the tests because only tests and benchmarks use them; the catalogue itself stays in
``pipelines`` for ``gpvton demo``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipelines.synthetic.catalogue import make_catalogue


def make_training_shards(out_dir: str | Path, n_garments: int = 9, n_persons: int = 9, seed: int = 0,
                         resolution: int = 512) -> dict[str, Any]:
    """A synthetic catalogue under ``out_dir/catalogue`` preprocessed into ``out_dir/shards``.

    Runs the Beam preprocessing in-process. Returns ``{"catalogue": ..., "shards": ...,
    "manifest": {...}}``; reuses finished shards.
    """
    from gpvton_core.conditions.resize import working_size
    from pipelines.preprocess.beam_pipeline import PipelineSpec, run_pipeline
    from pipelines.preprocess.readers import read_manifest

    out = Path(out_dir)
    cat, shards = out / "catalogue", out / "shards"
    if (shards / "manifest.json").is_file():
        return {"catalogue": str(cat), "shards": str(shards),
                "manifest": json.loads((shards / "manifest.json").read_text())}
    h, w = working_size(resolution)
    make_catalogue(cat, n_garments, n_persons, h, w, seed)
    manifest = run_pipeline(PipelineSpec(items=read_manifest(str(cat)), output=str(shards), resolution=resolution))
    return {"catalogue": str(cat), "shards": str(shards), "manifest": manifest}


def upper_training_batch(root: str | Path, variant: str = "vitonhd", n: int = 2,
                         pc_ratio: float = 1.0) -> dict:
    """A collated training batch of the first ``n`` paired upper-garment persons of a catalogue.

    Reads the plain-manifest files directly (no shards): for loss and benchmark checks that need
    real-looking training samples without running the preprocessing stage.
    """
    from gpvton_core.training import batch as B

    root = Path(root)
    with open(root / "garments.csv", newline="") as fh:
        garments = {r["garment_id"]: r for r in csv.DictReader(fh)}
    with open(root / "persons.csv", newline="") as fh:
        persons = list(csv.DictReader(fh))

    def img(path: str) -> np.ndarray:
        return np.asarray(Image.open(root / path))

    out = []
    for r in persons:
        g = garments[r["worn_garment_id"]]
        if g["category"] != "upper":
            continue
        kp = json.loads((root / r["keypoints"]).read_text())["people"][0]["pose_keypoints_2d"]
        person = {"person_id": r["person_id"], "image": img(r["image"]), "parsing": img(r["parsing"]),
                  "densepose": img(r["densepose"]), "keypoints": np.asarray(kp, np.float32), "pc_ratio": pc_ratio}
        garment = {"garment_id": g["garment_id"], "category": "upper", "image": img(g["image"]),
                   "mask": img(g["mask"]), "parts": img(g["parts"])}
        out.append(B.make_sample(person, garment, variant))
        if len(out) == n:
            break
    return B.collate(out)
