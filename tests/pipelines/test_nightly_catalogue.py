"""The nightly flow end to end, as a retailer runs it: the same commands over the same outputs.

Night 1 preprocesses and renders a generated catalogue; night 2 adds garments and a model photo,
gives one garment a new photo under its id and withdraws another. Preprocess derives only the
new and changed items, render renders exactly the pairs whose content key is new, and the
catalogue's index, summary and change list say so.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from infra.jobfolder import JobFolder
from infra.shards import ShardSet
from pipelines.cli import main

RENDER = ["--runner", "local", "--no-progress", "--random-weights", "--set", "model.width=0.0625",
          "--set", "unit_size=4", "--set", "batch_size=2"]


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _write(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _adopt(row: dict, src: Path, dst: Path, old_id: str, new_id: str, id_col: str) -> dict:
    """``row`` of catalogue ``src`` under a new id in ``dst``, with its files copied."""
    out = dict(row, **{id_col: new_id})
    for k, v in row.items():
        if v and (src / v).is_file():
            new = v.replace(old_id, new_id)
            shutil.copyfile(src / v, dst / new)
            out[k] = new
    if id_col == "person_id":
        out["worn_garment_id"] = ""
    return out


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory) -> dict:
    from PIL import Image, ImageOps

    from pipelines.synthetic.catalogue import make_catalogue

    root = tmp_path_factory.mktemp("nightly")
    make_catalogue(root / "night1", n_garments=12, n_persons=4, height=128, width=96, seed=0)
    make_catalogue(root / "extra", n_garments=3, n_persons=1, height=128, width=96, seed=5)
    night2 = root / "night2"
    shutil.copytree(root / "night1", night2)
    garments = _rows(night2 / "garments.csv")
    by_cat: dict[str, list[str]] = {}
    for r in garments:
        by_cat.setdefault(r["category"], []).append(r["garment_id"])
    withdrawn, changed = by_cat["upper"][0], by_cat["lower"][0]
    garments = [r for r in garments if r["garment_id"] != withdrawn]
    img = next(r["image"] for r in garments if r["garment_id"] == changed)
    ImageOps.mirror(Image.open(night2 / img)).save(night2 / img)            # a reshot photo, same id
    extra_g = _rows(root / "extra" / "garments.csv")
    added_g = [_adopt(r, root / "extra", night2, r["garment_id"], f"g01{i:02d}", "garment_id")
               for i, r in enumerate(extra_g)]
    _write(night2 / "garments.csv", garments + added_g)
    persons = _rows(night2 / "persons.csv")
    extra_p = _rows(root / "extra" / "persons.csv")[0]
    added_p = _adopt(extra_p, root / "extra", night2, extra_p["person_id"], "p0100", "person_id")
    _write(night2 / "persons.csv", persons + [added_p])
    return {"night1": root / "night1", "night2": night2, "withdrawn": withdrawn, "changed": changed,
            "added_garments": {r["garment_id"] for r in added_g}, "added_person": "p0100"}


def _plan(shards: Path) -> set[tuple[str, str]]:
    """The cross product the shards call for: every garment onto every photo that takes its category."""
    s = ShardSet(str(shards))
    persons = s.read_table("persons", ["person_id", "categories"]).to_pylist()
    garments = s.read_table("garments", ["garment_id", "category"]).to_pylist()
    return {(p["person_id"], g["garment_id"]) for p in persons for g in garments if g["category"] in p["categories"]}


def _keys(shards: Path) -> dict[str, str]:
    s = ShardSet(str(shards))
    out = {r["person_id"]: r["content_key"] for r in s.read_table("persons", ["person_id", "content_key"]).to_pylist()}
    out.update({r["garment_id"]: r["content_key"]
                for r in s.read_table("garments", ["garment_id", "content_key"]).to_pylist()})
    return out


def _worn(catalogue: Path) -> dict[str, str]:
    return {r["person_id"]: r["worn_garment_id"] for r in _rows(catalogue / "persons.csv")}


def test_two_nights_over_the_same_outputs(catalogue, tmp_path, capsys):
    shards, job = tmp_path / "shards", tmp_path / "job"
    assert main(["preprocess", "--input", f"manifest:{catalogue['night1']}", "--output", str(shards),
                 "--resolution", "128"]) == 0
    plan1 = _plan(shards)
    keys1 = _keys(shards)
    assert main(["render", "--shards", str(shards), "--output", str(job), *RENDER]) == 0
    index1 = {(r["person_id"], r["garment_id"]): r for r in JobFolder(str(job)).read_index().to_pylist()}
    assert set(index1) == plan1
    files1 = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (job / "renders").rglob("*.jpg")}

    # night 2: the changed catalogue into the same shards and the same job
    capsys.readouterr()
    assert main(["preprocess", "--input", f"manifest:{catalogue['night2']}", "--output", str(shards),
                 "--resolution", "128"]) == 0
    changes = json.loads((shards / "manifest.json").read_text())["changes"]
    assert changes["garments"]["added"] == len(catalogue["added_garments"])
    assert changes["garments"]["changed"] == 1 and changes["garments"]["retired"] == 1
    # a person row derives from the garment it wears too: wearers of the changed or withdrawn garment change
    keys2 = _keys(shards)
    wearers = {p for p, w in _worn(catalogue["night1"]).items() if w in (catalogue["changed"], catalogue["withdrawn"])}
    changed_persons = {i for i in keys1 if i in keys2 and keys1[i] != keys2[i] and i.startswith("p")}
    assert changed_persons == wearers and changes["persons"]["changed"] == len(wearers)
    assert changes["persons"]["added"] == 1
    plan2 = _plan(shards)
    new = catalogue["added_garments"] | {catalogue["added_person"]}
    added = {pg for pg in plan2 if pg[0] in new or pg[1] in new}
    updated = {pg for pg in plan2 if pg[1] == catalogue["changed"] or pg[0] in wearers} - added
    retired = plan1 - plan2
    unchanged = plan2 - added - updated
    assert retired and {g for _, g in retired} == {catalogue["withdrawn"]}

    assert main(["render", "--shards", str(shards), "--output", str(job), "--dry-run", *RENDER]) == 0
    out = capsys.readouterr().out
    assert f"{len(added)} added, {len(updated)} updated" in out and f"{len(retired)} retired" in out

    assert main(["render", "--shards", str(shards), "--output", str(job), *RENDER]) == 0
    summary = json.loads((job / "summary.json").read_text())
    assert summary["changes"] == {"added": len(added), "updated": len(updated), "retired": len(retired),
                                  "unchanged": len(unchanged), "retried": 0}
    assert summary["pairs_rendered_this_run"] == len(added) + len(updated)
    assert summary["pairs"] == len(plan2) and sum(summary["counts"].values()) == len(plan2)
    index2 = {(r["person_id"], r["garment_id"]): r for r in JobFolder(str(job)).read_index().to_pylist()}
    assert set(index2) == plan2                                             # retired pairs left the index
    for pg in unchanged:                                                    # not rewritten: same bytes, mtime
        path = job / index2[pg]["output_key"]
        assert index2[pg]["output_key"] == index1[pg]["output_key"]
        assert (path.stat().st_mtime_ns, path.read_bytes()) == files1[path]
    for pg in updated:
        assert index2[pg]["version"] != index1[pg]["version"]
    listed = JobFolder(str(job)).read_changes().to_pylist()
    assert {(r["person_id"], r["garment_id"]) for r in listed if r["change"] == "added"} == added
    assert {(r["person_id"], r["garment_id"]) for r in listed if r["change"] == "updated"} == updated
    assert {(r["person_id"], r["garment_id"]) for r in listed if r["change"] == "retired"} == retired

    # status agrees with the summary, and names the change list for the publisher
    capsys.readouterr()
    assert main(["status", str(job), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["counts"] == summary["counts"] and status["last_run"]["changes"] == summary["changes"]
    assert main(["status", str(job), "--change-list"]) == 0
    assert capsys.readouterr().out.strip() == JobFolder(str(job)).url(summary["change_list"])
