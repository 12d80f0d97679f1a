"""Render planning: deterministic units, pairing modes, filters, configuration errors (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from infra.schema import GARMENTS, PERSONS
from pipelines.config import ConfigError
from pipelines.render import RenderConfig, plan_digest, plan_units, read_catalogue, s3_settings


@pytest.fixture(scope="module")
def shards(synthetic_shards) -> Path:
    return synthetic_shards(n_garments=9, n_persons=6, seed=1)


def _plan(shards: Path, **kw):
    cfg = RenderConfig(shards=str(shards), output=str(shards.parent / "job"), **kw)
    persons, garments, index, _ = read_catalogue(cfg, s3_settings(cfg))
    return cfg, persons, garments, index


def test_cross_plan_covers_every_compatible_pair_once(shards):
    cfg, persons, garments, index = _plan(shards, unit_size=4)
    units = plan_units(cfg, persons, garments)
    p_cats = {r["person_id"]: set(r["categories"]) for r in persons.to_pylist()}
    expected = {(p, r["garment_id"]) for r in garments.to_pylist() for p, cs in p_cats.items() if r["category"] in cs}
    got = [(q["person_id"], q["garment_id"]) for u in units for q in u["pairs"]]
    assert len(got) == len(set(got)) and set(got) == expected
    g_cat = {r["garment_id"]: r["category"] for r in garments.to_pylist()}
    for u in units:
        assert 1 <= len(u["pairs"]) <= 4
        assert all(g_cat[q["garment_id"]] == u["category"] for q in u["pairs"])
        assert set(u["person_ids"]) == {q["person_id"] for q in u["pairs"]}
        assert set(u["garment_ids"]) == {q["garment_id"] for q in u["pairs"]}
    assert [u["unit_id"] for u in units] == list(range(len(units)))
    # deterministic
    assert plan_digest(plan_units(cfg, persons, garments)) == plan_digest(units)
    # every id is in the index
    assert set(index["persons"]) == set(p_cats) and set(index["garments"]) == set(g_cat)


@pytest.mark.parametrize("unit_size", [6, 9])
def test_units_reuse_features_block_structure(shards, unit_size):
    # a dense cross pairing whose blocks fit the unit size: every unit is a block, pairs = persons ×
    # garments of the unit, so a worker encodes each person and garment once for many pairs
    cfg, persons, garments, _ = _plan(shards, unit_size=unit_size, categories=["upper"])
    units = plan_units(cfg, persons, garments)
    assert len(units) > 1
    for u in units:
        assert len(u["pairs"]) == len(u["person_ids"]) * len(u["garment_ids"]) > 1
        assert {(q["person_id"], q["garment_id"]) for q in u["pairs"]} == \
            {(p, g) for p in u["person_ids"] for g in u["garment_ids"]}
    encodes = sum(len(u["person_ids"]) + len(u["garment_ids"]) for u in units)
    assert encodes < sum(len(u["pairs"]) for u in units)   # fewer encodes than pairs


def test_filters_and_categories(shards):
    cfg, persons, garments, _ = _plan(shards, persons={"exclude": ["p0000"]}, garments={"include": ["g000[0-4]"]},
                                      categories=["lower"])
    units = plan_units(cfg, persons, garments)
    pairs = [(q["person_id"], q["garment_id"]) for u in units for q in u["pairs"]]
    assert pairs and all(p != "p0000" for p, _ in pairs)
    assert all(g in {"g0000", "g0001", "g0002", "g0003", "g0004"} for _, g in pairs)
    assert {u["category"] for u in units} == {"lower"}


def test_paired_and_pairs_file(shards, tmp_path):
    cfg, persons, garments, _ = _plan(shards, pairing="paired")
    units = plan_units(cfg, persons, garments)
    worn = {r["person_id"]: r["worn_garment_id"] for r in persons.to_pylist()}
    got = {(q["person_id"], q["garment_id"]) for u in units for q in u["pairs"]}
    assert got == set(worn.items())
    assert all(u["worn"][q["person_id"]] == q["garment_id"] for u in units for q in u["pairs"])

    f = tmp_path / "pairs.txt"
    p0, g0 = next(iter(worn.items()))
    f.write_text(f"# person garment\n{p0} {g0}\n{p0} {g0}\nnobody g0000\n")
    cfg, persons, garments, _ = _plan(shards, pairing="pairs", pairs_file=str(f))
    units = plan_units(cfg, persons, garments, [(p0, g0), (p0, g0), ("nobody", "g0000")])
    assert [(q["person_id"], q["garment_id"]) for u in units for q in u["pairs"]] == [(p0, g0)]
    with pytest.raises(ConfigError, match="none of the"):
        plan_units(cfg, persons, garments, [("nobody", "g0000")])


def test_config_errors_exit_2(shards, tmp_path, capsys):
    from pipelines.cli import main

    assert main(["render", "--output", str(tmp_path / "j")]) == 2                      # no shards
    assert "missing shards" in capsys.readouterr().err
    assert main(["render", "--shards", str(tmp_path / "none"), "--output", str(tmp_path / "j"), "--random-weights"]) == 2
    assert "no persons shards" in capsys.readouterr().err
    assert main(["render", "--shards", str(shards), "--output", str(tmp_path / "j"), "--set", "batch_sise=2", "--random-weights"]) == 2
    assert "batch_sise" in capsys.readouterr().err
    assert main(["render", "--shards", str(shards), "--output", str(tmp_path / "j"), "--resolution", "512", "--random-weights"]) == 2
    assert "resolution 512" in capsys.readouterr().err
    assert main(["render", "--shards", str(shards), "--output", str(tmp_path / "j"),
                 "--warp-checkpoint", str(tmp_path / "missing.pth"),
                 "--generator-checkpoint", str(tmp_path / "gen.pth")]) == 2
    assert "warp checkpoint not found" in capsys.readouterr().err
    empty = tmp_path / "empty"                                                          # empty shards
    for name in ("persons", "garments"):
        (empty / name).mkdir(parents=True)
        pq.write_table((PERSONS if name == "persons" else GARMENTS).empty_table(), empty / name / "part-00000.parquet")
    assert main(["render", "--shards", str(empty), "--output", str(tmp_path / "j"), "--random-weights"]) == 2
    err = capsys.readouterr().err
    assert "persons shards" in err and "are empty" in err and "Traceback" not in err
    assert main(["render", "--shards", str(shards), "--output", str(tmp_path / "j"), "--random-weights",
                 "--set", "garments.include=[nothing]"]) == 2
    assert "nothing to render" in capsys.readouterr().err
    cfg = tmp_path / "job.yaml"
    cfg.write_text(f"shards: {shards}\noutput: {tmp_path / 'j'}\npairing: pairs\nrandom_weights: true\n")
    assert main(["render", "--config", str(cfg)]) == 2
    assert "pairs_file" in capsys.readouterr().err
