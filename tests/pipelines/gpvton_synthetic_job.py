"""Write a small render job + shards in the storage contract of ARCHITECTURE.md, with synthetic
images, for the report and eval tests (local folders or s3:// URLs alike)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from infra.storage import Storage, sanitize_id
from infra.schema import GARMENTS, PERSONS, SCORES, UNITS

H, W = 64, 48
THRESHOLDS = {"warp_miou": {"warn": 0.5, "fail": 0.25}, "preserve_ssim": {"warn": 0.8, "fail": 0.6},
              "ssim": {"warn": 0.7, "fail": 0.5}, "parse_miou": {"warn": 0.5, "fail": 0.3}}


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


def write_job(job_url: str, shards_url: str, pairs: list[Pair], *, unit_size: int = 8,
              max_failed_fraction: float | None = 0.05, planned_extra: int = 0,
              write_labels: bool = True, job_id: str = "synthetic-job") -> dict:
    """Shards for every person/garment named by ``pairs``; renders, scores, plan, summary.

    A paired pair's render is its person photo with small noise (so SSIM is high); an unpaired
    one blends the garment in. ``planned_extra`` adds planned pairs without score rows.
    """
    job, shards = Storage(job_url), Storage(shards_url)
    persons = sorted({p.person for p in pairs})
    garments: dict[str, str] = {}
    for p in pairs:
        garments.setdefault(p.garment, p.category)
    pidx = {pid: i for i, pid in enumerate(persons)}
    gidx = {gid: j for j, gid in enumerate(sorted(garments))}
    worn = {p.person: p.garment for p in pairs if p.paired}

    prow = [{"person_id": pid, "categories": ["upper", "lower", "dresses"], "source": "synthetic",
             "source_uri": f"mem://{pid}", "height": H, "width": W,
             "image_png": png(person_image(pidx[pid])), "parsing_png": png(parsing(pidx[pid]), "L"),
             "densepose_png": png(np.zeros((H, W), np.uint8), "L"), "keypoints": [0.0] * 75,
             "worn_garment_id": worn.get(pid), "pc_ratio": None, "provenance": "{}",
             "content_key": f"synthetic-{pid}"} for pid in persons]
    grow = [{"garment_id": gid, "category": cat, "source": "synthetic", "source_uri": f"mem://{gid}",
             "height": H, "width": W, "image_png": png(garment_image(gidx[gid])),
             "mask_png": png(np.full((H, W), 255, np.uint8), "L"),
             "parts_png": png(np.full((H, W), 2, np.uint8), "L"), "provenance": "{}",
             "content_key": f"synthetic-{gid}"}
            for gid, cat in sorted(garments.items())]
    for kind, rows, schema in (("persons", prow, PERSONS), ("garments", grow, GARMENTS)):
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), buf)
        shards.write_bytes(f"{kind}/part-00000.parquet", buf.getvalue())
        # an empty shard, as Beam leaves them
        buf = io.BytesIO()
        pq.write_table(schema.empty_table(), buf)
        shards.write_bytes(f"{kind}/part-00001.parquet", buf.getvalue())
    shards.write_json("manifest.json", {"schema_version": 1, "persons": len(prow), "garments": len(grow)})

    rng = np.random.default_rng(0)
    units, score_rows = [], []
    for u0 in range(0, len(pairs), unit_size):
        chunk = pairs[u0:u0 + unit_size]
        uid = u0 // unit_size
        units.append({"unit_id": uid, "category": chunk[0].category,
                      "person_ids": sorted({p.person for p in chunk}),
                      "garment_ids": sorted({p.garment for p in chunk}),
                      "pairs": [{"person_id": p.person, "garment_id": p.garment} for p in chunk]})
        rows = []
        for p in chunk:
            key = None
            if p.flag != "error":
                key = (f"renders/{sanitize_id(p.category)}/{sanitize_id(p.person)}/"
                       f"{sanitize_id(p.garment)}.jpg")
                base = person_image(pidx[p.person]).astype(np.float64)
                if not p.paired:
                    base = 0.6 * base + 0.4 * garment_image(gidx[p.garment])
                img = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
                job.write_bytes(key, jpg(img))
                if write_labels:
                    lab = render_label(pidx[p.person], p.category) * 25
                    job.write_bytes(key.replace("renders/", "debug/", 1).rsplit(".", 1)[0] + ".label.png",
                                    png(lab, "L"))
            rows.append({"unit_id": uid, "person_id": p.person, "garment_id": p.garment,
                         "category": p.category, "paired": p.paired,
                         "output_uri": job.url(key) if key else None, "output_key": key,
                         "warp_miou": p.scores.get("warp_miou"),
                         "preserve_ssim": p.scores.get("preserve_ssim"),
                         "ssim": p.scores.get("ssim"), "parse_miou": p.scores.get("parse_miou"),
                         "flag": p.flag, "reason": p.reason, "error": p.error, "seconds": 0.5})
            score_rows.append(rows[-1])
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows, schema=SCORES), buf)
        key = f"scores/unit-{uid:05d}.parquet"
        job.write_bytes(key, buf.getvalue())
        job.mark_done(key)
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(units, schema=UNITS), buf)
    job.write_bytes("plan/units.parquet", buf.getvalue())
    config = {"shards": shards_url, "output": job_url, "thresholds": THRESHOLDS}
    if max_failed_fraction is not None:
        config["max_failed_fraction"] = max_failed_fraction
    counts = {f: sum(1 for p in pairs if p.flag == f) for f in ("ok", "warn", "fail", "error")}
    meta = {"job_id": job_id, "config": config, "config_hash": "0123456789abcdef",
            "fingerprint": "fp-" + job_id, "package_version": "0.1.0",
            "checkpoints": {"warp": {"path": None, "sha256": None},
                            "generator": {"path": None, "sha256": None}},
            "model_note": "randomly initialised small networks (synthetic test job)",
            "thresholds": THRESHOLDS, "pairs": len(pairs) + planned_extra, "resolution": H,
            "variant": "vitonhd"}
    job.write_json("job.json", meta)
    job.write_json("summary.json", {"pairs": len(pairs) + planned_extra, "pairs_total": len(pairs) + planned_extra,
                                    **{f"pairs_{k}": v for k, v in counts.items()}, "counts": counts,
                                    "pairs_per_second": 2.5, "elapsed_s": 12.0})
    return {"job": job, "shards": shards, "rows": score_rows, "meta": meta, "person_index": pidx}


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
