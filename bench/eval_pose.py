"""Accuracy of the bundled pose estimator (BlazePose → BODY_25) against the datasets' own keypoints.

    python bench/eval_pose.py [--data ../shared/data] [--json bench/results/pose_pck.json]
                              [--no-calibration] [--fit]

Runs :class:`pipelines.preprocess.estimators.pose.PoseEstimator` (default config: mediapipe) on
every real person photo of the shared samples (7 VITON-HD, 6 Dress Code) and scores PCK@0.05·H per
joint (nose, neck, shoulders, elbows, wrists, hips) against the released OpenPose keypoints:
VITON-HD's BODY_25 JSON (768×1024) and Dress Code's COCO-18 (384×512, scaled to the photo). H is
the photo height. The largest person found is scored; a photo without a person scores every joint
wrong. ``--fit`` re-derives the calibration constants of
:mod:`gpvton_core.conditions.pose_mapping` (median residuals of the uncalibrated mapping, in body
lengths, with their standard errors); ``--no-calibration`` scores the uncalibrated mapping.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gpvton_core.conditions import pose_mapping as pm  # noqa: E402
from gpvton_core.conditions.labels import BODY_25  # noqa: E402
from gpvton_core.conditions.pose import (body25_from_openpose, coco18_to_body25,  # noqa: E402
                                         scale_keypoints)


def load_samples(data: Path) -> list[dict]:
    """Every real person photo with its reference BODY_25 keypoints in the photo's pixels."""
    from PIL import Image

    from pipelines.preprocess.readers import read_dresscode, read_vitonhd

    out = []
    for dataset, reader in (("vitonhd", read_vitonhd), ("dresscode", read_dresscode)):
        for item in reader(str(data / dataset)):
            if item["kind"] != "person" or not item.get("keypoints"):
                continue
            rgb = np.asarray(Image.open(item["image"]).convert("RGB"))
            kp = json.loads(Path(item["keypoints"]).read_text())
            if item["keypoints_format"] == "openpose":
                ref = body25_from_openpose(kp)
            else:
                ref = coco18_to_body25(kp["keypoints"])
            ref_hw = item.get("keypoints_ref_hw") or rgb.shape[:2]
            ref = scale_keypoints(ref, tuple(ref_hw), rgb.shape[:2])
            out.append({"dataset": dataset, "id": item["id"], "rgb": rgb, "ref": ref})
    return out


def predict(samples: list[dict]) -> tuple[list[np.ndarray], str]:
    """BODY_25 of the first (largest) person per photo (all-missing when none), and the provenance."""
    from pipelines.preprocess.estimators.pose import PoseConfig, PoseEstimator

    with PoseEstimator(PoseConfig()) as est:
        preds = []
        for s in samples:
            persons = est.estimate(s["rgb"])
            preds.append(persons[0].keypoints if persons else np.zeros((25, 3), np.float32))
        return preds, est.provenance


def score(samples: list[dict], preds: list[np.ndarray]) -> tuple[dict, list[dict]]:
    per_ds: dict[str, list] = {}
    rows = []
    for s, p in zip(samples, preds):
        res = pm.pck(p, s["ref"], s["rgb"].shape[0])
        per_ds.setdefault(s["dataset"], []).append(res)
        err = {BODY_25[i]: None if (s["ref"][i, 2] <= 0 or p[i, 2] <= 0) else
               round(float(np.hypot(*(p[i, :2] - s["ref"][i, :2])) / s["rgb"].shape[0]), 4)
               for i in map(BODY_25.index, pm.PCK_JOINTS)}
        rows.append({"dataset": s["dataset"], "id": s["id"], "pck": res, "error_over_h": err})
    table = {ds: pm.pck_summary(r) for ds, r in per_ds.items()}
    table["all"] = pm.pck_summary([r for v in per_ds.values() for r in v])
    errs = [e for r in rows for e in r["error_over_h"].values() if e is not None]
    table["all"]["median_error_over_h"] = round(float(np.median(errs)), 4)   # present joints only
    return table, rows


def fit(samples: list[dict], preds: list[np.ndarray]) -> dict:
    """Median residuals (reference − uncalibrated prediction) in body lengths, mirrored L/R."""
    hips, elbows, wrists = [], [], []
    for s, p in zip(samples, preds):
        r = s["ref"]
        ok = lambda *js: all(p[j, 2] > 0 for j in js)  # noqa: E731
        if ok(1, 8, 9, 12):
            torso = np.linalg.norm(p[8, :2] - p[1, :2])
            for hip in (9, 12):
                if r[hip, 2] > 0:
                    out = (p[hip, :2] - p[8, :2]) / np.linalg.norm(p[hip, :2] - p[8, :2])
                    hips.append(float((r[hip, :2] - p[hip, :2]) @ out / torso))
        for near, far, acc in ((2, 3, elbows), (5, 6, elbows), (3, 4, wrists), (6, 7, wrists)):
            if ok(near, far) and r[far, 2] > 0:       # towards the joint nearer the body
                limb = p[near, :2] - p[far, :2]
                n = np.linalg.norm(limb)
                acc.append(float((r[far, :2] - p[far, :2]) @ (limb / n) / n))

    def stat(v: list[float]) -> dict:
        a = np.asarray(v)
        sd = 1.4826 * np.median(np.abs(a - np.median(a)))
        return {"median": round(float(np.median(a)), 4), "se": round(float(1.2533 * sd / np.sqrt(a.size)), 4),
                "n": int(a.size)}

    return {"HIP_OUTWARD (torso lengths)": stat(hips),
            "ELBOW_TOWARD_SHOULDER (upper-arm lengths)": stat(elbows),
            "wrist towards elbow (forearm lengths, not applied)": stat(wrists)}


def _cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine()


def print_table(table: dict) -> None:
    cols = list(pm.PCK_JOINTS) + ["overall"]
    print(f"{'PCK@0.05H':12s}" + "".join(f"{c[:9]:>10s}" for c in cols) + f"{'n':>6s}")
    for ds, row in table.items():
        cells = "".join(f"{'—' if row.get(c) is None else format(row[c], '.3f'):>10s}" for c in cols)
        print(f"{ds:12s}{cells}{row['n']:>6d}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--json", default=str(REPO / "bench" / "results" / "pose_pck.json"))
    ap.add_argument("--no-calibration", action="store_true")
    ap.add_argument("--fit", action="store_true", help="print the calibration fit (uncalibrated run)")
    args = ap.parse_args(argv)

    if args.no_calibration or args.fit:
        pm.HIP_OUTWARD = pm.ELBOW_TOWARD_SHOULDER = 0.0
    samples = load_samples(Path(args.data))
    preds, provenance = predict(samples)
    table, rows = score(samples, preds)
    print_table(table)
    fails = [f"{r['dataset']}/{r['id']}:{j}" for r in rows for j, ok in r["pck"].items() if ok is False]
    print("misses:", ", ".join(fails) or "none")
    print("median error of the joints found, ·H:", table["all"]["median_error_over_h"])
    result = {
        "what": "PCK@0.05·H of the bundled pose estimator against the datasets' OpenPose keypoints",
        "estimator": provenance,
        "calibration": None if args.no_calibration or args.fit else
        {"HIP_OUTWARD": pm.HIP_OUTWARD, "ELBOW_TOWARD_SHOULDER": pm.ELBOW_TOWARD_SHOULDER},
        "joints": list(pm.PCK_JOINTS), "table": table, "misses": fails, "photos": rows,
    }
    if args.fit:
        result["fit"] = fit(samples, preds)
        print(json.dumps(result["fit"], indent=1))
    import mediapipe
    import torch

    result["env"] = {"cpu": _cpu(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
                     "torch": torch.__version__, "mediapipe": mediapipe.__version__,
                     "load_average_1min": os.getloadavg()[0],
                     "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    if args.json and not (args.fit or args.no_calibration):
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
        print("wrote", args.json)
    elif args.json:
        print("(not written: --fit / --no-calibration runs are diagnostics)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
