"""Every kind of bad input in one run: exactly one error row each, every good row present."""

from __future__ import annotations

import io
import json

import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from preprocess_synth import bomb_png, jpg, png, synthetic_garment, synthetic_person, write_good_manifest
from shard_rows import decode_garment_row, decode_person_row
from pipelines.cli import main
from pipelines.preprocess.beam_pipeline import read_table


def _save(path, data: bytes) -> str:
    path.write_bytes(data)
    return path.name


def test_bad_inputs_one_error_row_each(tmp_path):
    root = tmp_path / "cat"
    write_good_manifest(root, n_persons=2)        # good: g0, g1, p0, p1
    img = root / "img"
    ann = root / "ann"
    g = synthetic_garment("upper")

    # Mode conversions (good rows): CMYK JPEG, RGBA PNG, palette PNG, 16-bit grey PNG.
    buf = io.BytesIO()
    Image.fromarray(g).convert("CMYK").save(buf, format="JPEG")
    _save(img / "cmyk.jpg", buf.getvalue())
    rgba = np.dstack([g, np.where(g.min(axis=2) > 240, 0, 255).astype(np.uint8)])
    _save(img / "rgba.png", png(rgba, "RGBA"))
    buf = io.BytesIO()
    Image.fromarray(g).convert("P", palette=Image.ADAPTIVE).save(buf, format="PNG")
    _save(img / "pal.png", buf.getvalue())
    g16 = (g[..., 0].astype(np.uint16) * 257)
    buf = io.BytesIO()
    Image.fromarray(g16).save(buf, format="PNG")
    _save(img / "grey16.png", buf.getvalue())

    # Bad files.
    _save(img / "corrupt.jpg", b"\xff\xd8\xff\xe0 this is not a jpeg" + bytes(range(256)))
    _save(img / "empty.jpg", b"")
    _save(img / "bomb.png", bomb_png())
    _save(img / "ok.jpg", jpg(g))

    garments = [
        "garment_id,image,category",
        "g0,img/g0.jpg,upper", "g1,img/g1.jpg,lower",           # the good ones (rewritten)
        "cmyk,img/cmyk.jpg,upper", "rgba,img/rgba.png,dresses", "pal,img/pal.png,upper",
        "grey16,img/grey16.png,upper",
        "corrupt,img/corrupt.jpg,upper",                          # → decode error
        "empty,img/empty.jpg,upper",                              # → decode error (0 bytes)
        "bomb,img/bomb.png,upper",                                # → decompression-bomb error
        "shoes,img/ok.jpg,shoes",                                 # → unknown category
        "g0,img/ok.jpg,upper",                                    # → duplicate id
        "../x,img/ok.jpg,upper",                                  # → escapes the prefix
        "a/b,img/ok.jpg,upper",                                   # → escapes the prefix
        "missing,img/nope.jpg,upper",                             # → file not found
    ]
    (root / "garments.csv").write_text("\n".join(garments) + "\n")

    # Persons: wrong-size annotation, no person in the OpenPose JSON.
    p = synthetic_person(5)
    _save(img / "p5.jpg", jpg(p["image"]))
    _save(ann / "p5.json", json.dumps(p["openpose"]).encode())
    _save(ann / "p5_dp.png", png(p["densepose"]))
    _save(ann / "p5_lip.png", png(p["lip"]))
    small = np.asarray(Image.fromarray(p["lip"]).resize((300, 500), Image.NEAREST))
    _save(ann / "p5_lip_small.png", png(small))
    _save(ann / "nobody.json", json.dumps({"version": 1.3, "people": []}).encode())
    persons = (root / "persons.csv").read_text().strip().splitlines()
    persons += [
        "p5size,img/p5.jpg,upper,ann/p5.json,ann/p5_lip_small.png,ann/p5_dp.png,",   # → size mismatch
        "p5nobody,img/p5.jpg,upper,ann/nobody.json,ann/p5_lip.png,ann/p5_dp.png,",   # → no person
        "p5cat,img/p5.jpg,hats,ann/p5.json,ann/p5_lip.png,ann/p5_dp.png,",           # → unknown category
        "p0,img/p5.jpg,upper,ann/p5.json,ann/p5_lip.png,ann/p5_dp.png,",             # → duplicate id
        "p5ok,img/p5.jpg,upper,ann/p5.json,ann/p5_lip.png,ann/p5_dp.png,g0",        # good
    ]
    (root / "persons.csv").write_text("\n".join(persons) + "\n")

    out = tmp_path / "shards"
    limits = ["--set", "max_error_fraction.persons=1", "--set", "max_error_fraction.garments=1"]
    rc = main(["preprocess", "--input", f"manifest:{root}", "--output", str(out), *limits])
    assert rc == 0                                     # limits lifted: bad input on purpose

    errors = read_table(str(out), "errors").to_pylist()
    by_id = {}
    for e in errors:
        by_id.setdefault((e["kind"], e["item_id"]), []).append(e)
    expected = {("garment", "corrupt"): "cannot decode", ("garment", "empty"): "0 bytes",
                ("garment", "bomb"): "decompression-bomb", ("garment", "shoes"): "unknown category",
                ("garment", "g0"): "duplicate", ("garment", "../x"): "not storage-safe",
                ("garment", "a/b"): "not storage-safe", ("garment", "missing"): "not found",
                ("person", "p5size"): "300x500", ("person", "p5nobody"): "no person",
                ("person", "p5cat"): "unknown categories", ("person", "p0"): "duplicate"}
    assert set(by_id) == set(expected), sorted(by_id)
    for key, needle in expected.items():
        assert len(by_id[key]) == 1, key
        assert needle in by_id[key][0]["reason"], (key, by_id[key][0]["reason"])
        assert by_id[key][0]["stage"]
    assert len(errors) == len(expected)

    garments_out = {r["garment_id"]: decode_garment_row(r) for r in read_table(str(out), "garments").to_pylist()}
    assert set(garments_out) == {"g0", "g1", "cmyk", "rgba", "pal", "grey16"}
    assert garments_out["g0"]["source_uri"].endswith("img/g0.jpg")    # the first g0 is kept
    assert "CMYK" in garments_out["cmyk"]["provenance"]["image_converted"]
    assert "alpha" in garments_out["rgba"]["provenance"]["image_converted"]
    assert "16" in garments_out["grey16"]["provenance"]["image_converted"]
    for gr in garments_out.values():
        assert gr["mask"].sum() > 0.1 * gr["mask"].size
    persons_out = {r["person_id"]: decode_person_row(r) for r in read_table(str(out), "persons").to_pylist()}
    assert set(persons_out) == {"p0", "p1", "p5ok"}
    assert persons_out["p0"]["source_uri"].endswith("img/p0.jpg")
    assert persons_out["p5ok"]["worn_garment_id"] == "g0" and persons_out["p5ok"]["pc_ratio"] is not None
    assert persons_out["p0"]["categories"] == ["upper", "lower"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"persons": 3, "garments": 6, "errors": len(expected)}


def test_nothing_processed_exits_1_and_config_errors_exit_2(tmp_path):
    root = tmp_path / "cat"
    root.mkdir()
    (root / "empty.jpg").write_bytes(b"")
    (root / "garments.csv").write_text("garment_id,image,category\nx,empty.jpg,upper\n")
    assert main(["preprocess", "--input", f"manifest:{root}", "--output", str(tmp_path / "o")]) == 1
    assert main(["preprocess", "--input", f"nope:{root}", "--output", str(tmp_path / "o")]) == 2
    assert main(["preprocess", "--input", f"manifest:{tmp_path / 'missing'}", "--output", str(tmp_path / "o")]) == 2
    assert main(["preprocess", "--input", f"manifest:{root}"]) == 2
    assert main(["preprocess", "--input", f"manifest:{root}", "--output", "x", "--set", "resolution=300"]) == 2
    assert main(["preprocess", "--input", f"manifest:{root}", "--output", "x", "--set", "bogus=1"]) == 2
