"""Fabricate render jobs in the catalogue layout of ``infra/jobfolder.py``, with synthetic images, for
the report / eval / status tests and the report benchmark (local folders or s3:// URLs alike).

A call of :func:`write_job` is one render *run*: its pairs are added (new to the index) or updated
(already in it: a new content version, so a new image key), ``retired`` pairs leave the index. It
writes what a real run leaves behind — renders at versioned keys, the index through
:meth:`JobFolder.commit_index`, the change list through :meth:`JobFolder.write_changes`, the work area
(``plan/``, ``scores/unit-*``), ``summary.json`` / ``runs/RUN.json`` and ``job.json`` — so readers
cannot tell it from a render. Rows are Arrow columns throughout, so 200k pairs take seconds
(:func:`bulk_pairs` + ``images="shared"``).
"""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from infra.jobfolder import JobFolder, pair_version, render_key, unit_counts, unit_key
from infra.schema import CHANGES, FLAGS, GARMENTS, INDEX, PERSONS, SCORES, UNITS
from infra.storage import Storage, is_local

H, W = 64, 48
THRESHOLDS = {"warp_miou": {"warn": 0.5, "fail": 0.25}, "preserve_ssim": {"warn": 0.8, "fail": 0.6},
              "ssim": {"warn": 0.7, "fail": 0.5}, "parse_miou": {"warn": 0.5, "fail": 0.3}}
MODEL_KEY = "synthetic-model"
SCORE_COLUMNS = ("warp_miou", "preserve_ssim", "ssim", "parse_miou")

#: What a fabricated run says about each of its pairs (the rest is derived).
PAIRS = pa.schema([
    pa.field("person_id", pa.string()), pa.field("garment_id", pa.string()), pa.field("category", pa.string()),
    pa.field("paired", pa.bool_()), pa.field("flag", pa.string()), pa.field("reason", pa.string()),
    pa.field("error", pa.string()), *[pa.field(s, pa.float32()) for s in SCORE_COLUMNS],
])


def png(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def jpg(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def person_image(i: int) -> np.ndarray:
    rng = np.random.default_rng(100 + i)
    y, x = np.mgrid[0:H, 0:W]
    img = np.stack([(x * 5 + i * 40) % 256, (y * 4 + i * 17) % 256, ((x + y) * 3) % 256], -1)
    img = img + rng.integers(0, 30, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def parsing(i: int) -> np.ndarray:
    """A 29-label GP-VTON parsing: face 3, neck 11, torso 5, sleeves 21/22, arms 15/16, legs 9/10."""
    d = i % 3
    lab = np.zeros((H, W), np.uint8)
    lab[2:14, 18:30] = 3
    lab[14:18, 20:28] = 11
    lab[18:40, 16 + d:32] = 5
    lab[18:30, 10:16 + d] = 21
    lab[18:30, 32:38] = 22
    lab[30:40, 10:16 + d] = 15
    lab[30:40, 32:38] = 16
    lab[40:64, 14:24] = 9
    lab[40:64, 24:34] = 10
    return lab


def render_label(i: int, category: str) -> np.ndarray:
    """What the render's debug label map holds for person ``i``: the target classes (§8.7),
    slightly damaged (rows 36..39 lost), as plain labels (multiply by 25 for the PNG)."""
    from gpvton_core.inputs import person_targets

    lab = person_targets(parsing(i), "vitonhd", category).numpy().astype(np.uint8)
    lab[36:40] = 0
    return lab


def garment_image(j: int) -> np.ndarray:
    img = np.full((H, W, 3), 255, np.uint8)
    img[10:54, 8:40] = (40 * j % 256, 200 - 30 * j % 200, 90)
    return img


@dataclass
class Pair:
    person: str
    garment: str
    category: str = "upper"
    flag: str = "ok"
    scores: dict = field(default_factory=dict)
    reason: str | None = None
    error: str | None = None
    paired: bool = False


def pairs_table(pairs: Sequence[Pair]) -> pa.Table:
    """Test pairs as the Arrow columns :func:`write_job` works on."""
    cols = {"person_id": [p.person for p in pairs], "garment_id": [p.garment for p in pairs],
            "category": [p.category for p in pairs], "paired": [p.paired for p in pairs],
            "flag": [p.flag for p in pairs], "reason": [p.reason for p in pairs], "error": [p.error for p in pairs],
            **{s: [p.scores.get(s) for p in pairs] for s in SCORE_COLUMNS}}
    return pa.table(cols, schema=PAIRS)


def bulk_pairs(n_persons: int, n_garments: int, *, seed: int = 0, warn: float = 0.1, fail: float = 0.02,
               error: float = 0.005, prefix: str = "") -> pa.Table:
    """The cross product of ``n_persons`` × ``n_garments`` (three categories by garment), flags drawn
    at the given rates with scores that agree with them — built as arrays, for 100k+ pairs."""
    rng = np.random.default_rng(seed)
    n = n_persons * n_garments
    pi, gi = np.divmod(np.arange(n), n_garments)
    persons = np.array([f"{prefix}P{i:06d}" for i in range(n_persons)], dtype=object)
    garments = np.array([f"{prefix}G{j:06d}" for j in range(n_garments)], dtype=object)
    cats = np.array(["upper", "lower", "dresses"], dtype=object)
    u = rng.random(n)
    flag = np.where(u < error, "error", np.where(u < error + fail, "fail",
                                                 np.where(u < error + fail + warn, "warn", "ok"))).astype(object)
    level = np.select([flag == "ok", flag == "warn", flag == "fail"], [0.85, 0.4, 0.15], np.nan)
    warp = (level + rng.uniform(-0.08, 0.08, n)).astype(np.float32)
    pres = np.clip(level + 0.1 + rng.uniform(-0.05, 0.05, n), 0, 1).astype(np.float32)
    is_err = flag == "error"
    reason = np.where((flag == "warn") | (flag == "fail"), "warp_miou below threshold", None)
    return pa.table({
        "person_id": pa.array(persons[pi], pa.string()), "garment_id": pa.array(garments[gi], pa.string()),
        "category": pa.array(cats[gi % 3], pa.string()), "paired": pa.array(np.zeros(n, bool)),
        "flag": pa.array(flag, pa.string()), "reason": pa.array(reason, pa.string()),
        "error": pa.array(np.where(is_err, "RuntimeError: CUDA out of memory", None), pa.string()),
        "warp_miou": pa.array(warp, pa.float32(), mask=is_err), "preserve_ssim": pa.array(pres, pa.float32(), mask=is_err),
        "ssim": pa.nulls(n, pa.float32()), "parse_miou": pa.nulls(n, pa.float32()),
    }, schema=PAIRS)


def _write_shards(shards: Storage, persons: dict[str, int], garments: dict[str, tuple[int, str]],
                  worn: dict[str, str]) -> None:
    prow = [{"person_id": pid, "categories": ["upper", "lower", "dresses"], "source": "synthetic",
             "source_uri": f"mem://{pid}", "height": H, "width": W,
             "image_png": png(person_image(i)), "parsing_png": png(parsing(i), "L"),
             "densepose_png": png(np.zeros((H, W), np.uint8), "L"), "keypoints": [0.0] * 75,
             "worn_garment_id": worn.get(pid), "pc_ratio": None, "provenance": "{}",
             "content_key": f"synthetic-{pid}-{i}"} for pid, i in persons.items()]
    grow = [{"garment_id": gid, "category": cat, "source": "synthetic", "source_uri": f"mem://{gid}",
             "height": H, "width": W, "image_png": png(garment_image(j)),
             "mask_png": png(np.full((H, W), 255, np.uint8), "L"),
             "parts_png": png(np.full((H, W), 2, np.uint8), "L"), "provenance": "{}",
             "content_key": f"synthetic-{gid}-{j}"} for gid, (j, cat) in garments.items()]
    for kind, rows, schema in (("persons", prow, PERSONS), ("garments", grow, GARMENTS)):
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), buf)
        shards.write_bytes(f"{kind}/part-00000.parquet", buf.getvalue())
        buf = io.BytesIO()   # an empty shard, as Beam leaves them
        pq.write_table(schema.empty_table(), buf)
        shards.write_bytes(f"{kind}/part-00001.parquet", buf.getvalue())
    shards.write_json("manifest.json", {"schema_version": 1, "persons": len(prow), "garments": len(grow)})


def _write_local(root: str, keys: list[str], data: bytes) -> None:
    import os

    made: set[str] = set()
    for key in keys:
        path = os.path.join(root, key)
        d = os.path.dirname(path)
        if d not in made:
            os.makedirs(d, exist_ok=True)
            made.add(d)
        with open(path, "wb") as fh:
            fh.write(data)


def _col(table: pa.Table, name: str) -> list:
    return table.column(name).to_pylist()


def write_job(job_url: str, shards_url: str, pairs: Union[Sequence[Pair], pa.Table], *,
              retired: Iterable[tuple[str, str]] = (), unit_size: int = 8,
              max_failed_fraction: float | None = 0.05, planned_extra: int = 0, write_labels: bool = True,
              images: str = "distinct", run_id: Optional[str] = None,
              workers: int = 8) -> dict:
    """One fabricated render run over ``job_url`` (see the module docstring).

    ``planned_extra`` adds planned pairs of this run without a score row (a lost unit: they count as
    added and missing). ``images``: ``distinct`` (a per-pair picture: a paired render is its person
    photo with small noise, an unpaired one blends the garment in), ``shared`` (one small JPEG for
    every render: fast, for benchmarks) or ``none``. Returns the job and shard storages, the run's
    score rows (``rows``), ``meta``, ``person_index``, ``run_id`` and the index ``manifest``.
    """
    job, shards = Storage(job_url), Storage(shards_url)
    folder = JobFolder(job.root, storage=job)
    table = pairs if isinstance(pairs, pa.Table) else pairs_table(pairs)
    table = table.cast(PAIRS)
    n = table.num_rows
    old_manifest = folder.index_manifest()
    generation = int(old_manifest.get("generation", 0))
    run_id = run_id or f"20250101T{generation:06d}Z-synth{generation:02d}"
    old = folder.read_index(["person_id", "garment_id", "category", "paired"], old_manifest)

    # --- shards: every person and garment of the catalogue after this run
    retired = list(retired)
    retired_set = set(retired)
    if retired_set & set(zip(table.column("person_id").to_pylist(), table.column("garment_id").to_pylist())):
        raise ValueError("a pair cannot be rendered and retired in one run")
    pids = _col(table, "person_id")
    gids = _col(table, "garment_id")
    cats = _col(table, "category")
    paired = _col(table, "paired")
    persons: dict[str, int] = {}
    garments: dict[str, tuple[int, str]] = {}
    worn: dict[str, str] = {}
    for p, g, c, w in zip([*_col(old, "person_id"), *pids], [*_col(old, "garment_id"), *gids],
                          [*_col(old, "category"), *cats], [*_col(old, "paired"), *paired]):
        persons.setdefault(p, len(persons))
        garments.setdefault(g, (len(garments), c))
        if w:
            worn[p] = g
    _write_shards(shards, dict(sorted(persons.items())), dict(sorted(garments.items())), worn)

    # --- keys, versions, change kinds
    in_index = set(zip(_col(old, "person_id"), _col(old, "garment_id")))
    suffix = f":{generation}" if generation else ""
    person_key = [f"pk:{p}" for p in pids]
    garment_key = [f"gk:{g}{suffix}" for g in gids]
    version = [pair_version(pk, gk, MODEL_KEY) for pk, gk in zip(person_key, garment_key)]
    flags = _col(table, "flag")
    out_key = [render_key(c, p, g, v, "jpg") if f != "error" else None
               for c, p, g, v, f in zip(cats, pids, gids, version, flags)]
    change = ["updated" if (p, g) in in_index else "added" for p, g in zip(pids, gids)]

    # --- renders (and debug label maps)
    shared = jpg(person_image(0)) if images == "shared" else None
    rng = np.random.default_rng(generation)
    noise = rng.normal(0, 6, (H, W, 3)) if images == "distinct" else None

    def put(i: int) -> None:
        key = out_key[i]
        if key is None or images == "none":
            return
        if shared is not None:
            job.write_bytes(key, shared)
            return
        base = person_image(persons[pids[i]]).astype(np.float64)
        if not paired[i]:
            base = 0.6 * base + 0.4 * garment_image(garments[gids[i]][0])
        job.write_bytes(key, jpg(np.clip(base + np.roll(noise, i, axis=0), 0, 255).astype(np.uint8)))
        if write_labels:
            lab = render_label(persons[pids[i]], cats[i]) * 25
            job.write_bytes(render_key(cats[i], pids[i], gids[i], version[i], "label.png", "debug"), png(lab, "L"))

    if images == "shared" and is_local(job.root):
        _write_local(job.root, [k for k in out_key if k], shared)   # 200k files: no fsync, no temp names
    elif images != "none":
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(put, range(n)))

    # --- the work area: this run's units and score files (what status reads while a run goes)
    run_cols = {"run_id": pa.array([run_id] * n, pa.string()), "version": pa.array(version, pa.string()),
                "output_key": pa.array(out_key, pa.string()),
                "output_uri": pa.array([job.url(k) if k else None for k in out_key], pa.string()),
                "seconds": pa.array(np.full(n, 0.5, np.float32)),
                "person_key": pa.array(person_key, pa.string()), "garment_key": pa.array(garment_key, pa.string()),
                "model_key": pa.array([MODEL_KEY] * n, pa.string())}
    full = table
    for name, col in run_cols.items():
        full = full.append_column(name, col)
    unit_ids = np.arange(n, dtype=np.int32) // unit_size
    full = full.append_column("unit_id", pa.array(unit_ids, pa.int32()))
    job.delete("scores")
    units = []

    def write_unit(u: int) -> None:
        rows = full.slice(u * unit_size, unit_size)
        buf = io.BytesIO()
        pq.write_table(rows.select(SCORES.names).cast(SCORES), buf)
        job.write_bytes(unit_key(u), buf.getvalue())
        job.mark_done(unit_key(u), {**unit_counts(_col(rows, "flag"), _col(rows, "error")), "seconds": 1.0})

    for u in range(int(unit_ids[-1]) + 1 if n else 0):
        sl = slice(u * unit_size, (u + 1) * unit_size)
        units.append({"unit_id": u, "category": cats[sl][0], "person_ids": sorted(set(pids[sl])),
                      "garment_ids": sorted(set(gids[sl])),
                      "pairs": [{"person_id": p, "garment_id": g, "version": v}
                                for p, g, v in zip(pids[sl], gids[sl], version[sl])]})
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(write_unit, range(len(units))))
    folder.start_run({"run_id": run_id, "started": _now(), "index_generation": generation, "model_key": MODEL_KEY},
                     pa.Table.from_pylist(units, schema=UNITS))

    # --- the index and the change list
    drop = pa.table({"person_id": pa.array([p for p, _ in retired], pa.string()),
                     "garment_id": pa.array([g for _, g in retired], pa.string())})
    old_rows = folder.read_index(None, old_manifest) if retired else INDEX.empty_table()
    if retired:
        keys = pa.table({"person_id": drop.column(0), "garment_id": drop.column(1)})
        old_rows = old_rows.join(keys, keys=["person_id", "garment_id"], join_type="inner")
        missing = retired_set - set(zip(_col(old_rows, "person_id"), _col(old_rows, "garment_id")))
        if missing:
            raise ValueError(f"retired pairs not in the index: {sorted(missing)[:3]}")
    plan_pairs = len(in_index) - len(retired_set) + change.count("added") + planned_extra
    manifest = folder.commit_index(full.select(INDEX.names).cast(INDEX), drop, run_id, plan_pairs,
                                   extra={"pairs_per_second": 2.5, "plan_pairs": plan_pairs, "model_key": MODEL_KEY})
    changes = full.append_column("change", pa.array(change, pa.string())).select(CHANGES.names).cast(CHANGES)
    if retired:
        gone = old_rows.append_column("change", pa.array(["retired"] * old_rows.num_rows, pa.string()))
        changes = pa.concat_tables([changes, gone.select(CHANGES.names).cast(CHANGES)])
    changes = changes.take(pc.sort_indices(changes, [("change", "ascending"), ("category", "ascending"),
                                                     ("person_id", "ascending"), ("garment_id", "ascending")]))
    change_key = folder.write_changes(run_id, changes)

    # --- job.json and summary.json, as render writes them
    from pipelines.outcome import Outcome

    config = {"shards": shards.root, "output": job.root, "thresholds": THRESHOLDS, "max_unrendered_fraction": 0.05}
    if max_failed_fraction is not None:
        config["max_failed_fraction"] = max_failed_fraction
    prev = folder.meta()
    meta = {"config": config, "package_version": "0.1.0",
            "checkpoints": {"warp": {"path": None, "sha256": None}, "generator": {"path": None, "sha256": None}},
            "model_note": "randomly initialised small networks (synthetic test job)", "model_key": MODEL_KEY,
            "pairs": plan_pairs, "resolution": H, "variant": "vitonhd",
            "created": prev.get("created") or _now(), "updated": _now(), "run_id": run_id}
    job.write_json("job.json", meta)
    outcome = Outcome(planned=plan_pairs, counts=dict(manifest["counts"]))
    n_added = change.count("added")
    summary = {
        **outcome.as_dict(), "run_id": run_id,
        "changes": {"added": n_added + planned_extra, "updated": n - n_added, "retired": len(retired_set),
                    "unchanged": len(in_index) - (n - n_added) - len(retired_set), "retried": 0},
        "change_list": change_key, "max_unrendered_fraction": 0.05,
        "max_failed_fraction": max_failed_fraction if max_failed_fraction is not None else 0.05,
        "exit_code": int(outcome.unrendered_fraction > 0.05), "units": len(units), "units_lost": [],
        "lost_errors": [], "pairs_rendered_this_run": n, "pairs_per_second": 2.5, "measured_pairs_per_second": 2.5,
        "elapsed_seconds": 12.0, "render_seconds": 10.0, "model_note": meta["model_note"], "failures": [],
    }
    folder.write_summary(run_id, summary)
    rows = full.select(SCORES.names).to_pylist() if n <= 10_000 else []
    return {"job": job, "shards": shards, "rows": rows, "meta": meta, "person_index": persons, "run_id": run_id,
            "manifest": manifest, "summary": summary}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def mixed_pairs(n: int = 30, hostile_id: str | None = "<script>alert(1)</script>") -> list[Pair]:
    """``n`` pairs over two categories with every flag; scores consistent with the flags."""
    flags = ["ok", "warn", "fail", "error"]
    out = []
    for i in range(n):
        flag = flags[i % 7 % 4] if i % 7 < 4 else "ok"
        cat = "upper" if i % 2 == 0 else "lower"
        person = f"P{i % 6:03d}" if not (hostile_id and i == 5) else hostile_id
        garment = f"{cat[0].upper()}G{i:03d}"
        level = {"ok": 0.9, "warn": 0.6, "fail": 0.2, "error": None}[flag]
        scores = {} if level is None else {
            "warp_miou": round(level - 0.005 * i, 4), "preserve_ssim": round(min(0.99, level + 0.08 - 0.002 * i), 4)}
        out.append(Pair(person, garment, cat, flag, scores,
                        reason=None if flag in ("ok", "error") else f"warp_miou={scores['warp_miou']}<x",
                        error="RuntimeError: CUDA out of memory <b>boom</b>" if flag == "error" else None))
    return out


__all__ = ["FLAGS", "H", "W", "MODEL_KEY", "PAIRS", "Pair", "THRESHOLDS", "bulk_pairs", "garment_image", "jpg",
           "mixed_pairs", "pairs_table", "parsing", "person_image", "png", "render_label", "write_job"]
