"""The procedural catalogue: deterministic, exact labels, consistent masks, every file listed exists."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gpvton_core.conditions.labels import Joint, Label, Part
from pipelines.synthetic.catalogue import make_catalogue


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def cat(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("syn")
    return root, make_catalogue(root, n_garments=9, n_persons=9, height=256, width=192, seed=3)


def test_deterministic(tmp_path, cat):
    root, _ = cat
    make_catalogue(tmp_path / "again", n_garments=9, n_persons=9, height=256, width=192, seed=3)
    assert _digest(root) == _digest(tmp_path / "again")
    make_catalogue(tmp_path / "other", n_garments=9, n_persons=9, height=256, width=192, seed=4)
    assert _digest(root) != _digest(tmp_path / "other")


def test_files_listed_exist_and_csv_layout(cat):
    root, paths = cat
    for f in paths["garments"] + paths["persons"]:
        assert Path(f).is_file(), f
    g = list(csv.DictReader(open(paths["garments_csv"])))
    p = list(csv.DictReader(open(paths["persons_csv"])))
    assert list(g[0]) == ["garment_id", "image", "category", "mask", "parts"]
    assert list(p[0]) == ["person_id", "image", "categories", "keypoints", "parsing", "densepose",
                          "worn_garment_id"]
    assert {r["category"] for r in g} == {"upper", "lower", "dresses"}
    ids = {r["garment_id"] for r in g}
    for r in g:
        for k in ("image", "mask", "parts"):
            assert not Path(r[k]).is_absolute() and (root / r[k]).is_file()
    for r in p:
        assert r["worn_garment_id"] in ids
        for k in ("image", "keypoints", "parsing", "densepose"):
            assert not Path(r[k]).is_absolute() and (root / r[k]).is_file()
        kp = json.loads((root / r["keypoints"]).read_text())["people"][0]["pose_keypoints_2d"]
        assert len(kp) == 75
    meta = json.loads(Path(paths["meta"]).read_text())
    assert {v["style"] for v in meta["garments"].values()} == {
        "long", "short", "none", "trousers", "shorts", "skirt"}


def test_garment_masks_and_parts(cat):
    root, paths = cat
    meta = json.loads(Path(paths["meta"]).read_text())
    for r in csv.DictReader(open(paths["garments_csv"])):
        img = np.asarray(Image.open(root / r["image"]))
        mask = np.asarray(Image.open(root / r["mask"]))
        parts = np.asarray(Image.open(root / r["parts"]))
        assert img.shape == (256, 192, 3) and mask.shape == parts.shape == (256, 192)
        assert set(np.unique(mask)) <= {0, 255}
        assert set(np.unique(parts)) <= {0, 1, 2, 3}
        assert np.array_equal(mask > 0, parts > 0)
        assert (img[mask == 0] == 255).all()                        # white background
        style = meta["garments"][r["garment_id"]]["style"]
        present = set(np.unique(parts)) - {0}
        if style in ("none", "skirt"):
            assert present == {2}
        elif style in ("trousers", "shorts"):
            assert present == {1, 3}
        else:
            assert present == {1, 2, 3}
        if 1 in present:  # left = the wearer's left = the image right
            xs = np.nonzero(parts == 1)[1].mean(), np.nonzero(parts == 3)[1].mean()
            assert xs[0] > xs[1]


def test_person_labels(cat):
    root, paths = cat
    garments = {r["garment_id"]: r for r in csv.DictReader(open(paths["garments_csv"]))}
    for r in csv.DictReader(open(paths["persons_csv"])):
        parsing = np.asarray(Image.open(root / r["parsing"]))
        dp = np.asarray(Image.open(root / r["densepose"]))
        assert parsing.shape == dp.shape == (256, 192)
        assert parsing.max() <= 28 and dp.max() <= 24
        labels = set(np.unique(parsing).tolist())
        assert {Label.FACE, Label.HAIR, Label.LEFT_ARM, Label.RIGHT_ARM} <= labels
        g = garments[r["worn_garment_id"]]
        cat_ = g["category"]
        assert r["categories"].split(";")[0] == cat_
        want = {"upper": Label.UPPER, "dresses": Label.DRESSES}.get(cat_)
        if want is not None:
            assert (parsing == want).sum() > 200
        else:
            assert ((parsing == Label.SKIRTS) | (parsing == Label.LEFT_PANTS)).sum() > 200
        # the person's left arm is on the image right
        assert np.nonzero(parsing == Label.LEFT_ARM)[1].mean() > np.nonzero(parsing == Label.RIGHT_ARM)[1].mean()
        kp = np.asarray(json.loads((root / r["keypoints"]).read_text())["people"][0]["pose_keypoints_2d"]).reshape(25, 3)
        assert kp[Joint.L_SHOULDER, 0] > kp[Joint.R_SHOULDER, 0]
        # DensePose covers the body; background stays background
        assert (dp[parsing == Label.FACE] == Part.HEAD_RIGHT).all()
        assert (dp > 0).sum() > 0.1 * dp.size


def test_rejects_tiny_sizes(tmp_path):
    with pytest.raises(ValueError):
        make_catalogue(tmp_path, 1, 1, height=16, width=12)
