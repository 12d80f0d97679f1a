"""The hips of the bundled pose estimator on photos cut above the knee.

    python bench/eval_pose_cuts.py [--data ../shared/data] [--json bench/results/pose_cuts.json]

Retail model photos are often cut between the hips and the knees. A pose network that has never
seen the thighs end at the frame may put the hips where the body seems to end. This bench takes
every real person photo of the shared samples (7 VITON-HD, 6 Dress Code) whose reference keypoints
have both hips and both shoulders, cuts it at several heights below the hips (fractions of the
torso length, shoulder midpoint → hip midpoint: 0.25 just under the crotch … 1.0 about the knee;
``uncut`` is the photo as released), and scores each hip against the released OpenPose hip
(a cut leaves the hip inside the frame, so the reference stays valid). It reports, per cut, the
median and worst hip error in photo heights (of the cut photo) and torso lengths, the mean
vertical offset (positive = predicted below the reference) and PCK@0.05·H.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from eval_pose import _cpu, load_samples  # noqa: E402

CUTS = (None, 1.0, 0.6, 0.4, 0.25)        # None: the released photo
HIPS = (9, 12)


def cut_below_hips(rgb: np.ndarray, ref: np.ndarray, below: float | None) -> tuple[np.ndarray, float]:
    """The photo cut ``below`` torso lengths under the reference hip midpoint; (photo, torso length)."""
    mid_hip = ref[list(HIPS), :2].mean(0)
    neck = ref[[2, 5], :2].mean(0)
    torso = float(np.linalg.norm(mid_hip - neck))
    if below is None:
        return rgb, torso
    bottom = int(round(mid_hip[1] + below * torso))
    return rgb[: min(rgb.shape[0], bottom)], torso


def hip_errors(samples: list[dict], below: float | None, estimator) -> dict:
    rows = []
    for s in samples:
        ref = s["ref"]
        if not all(ref[j, 2] > 0 for j in (*HIPS, 2, 5)):
            continue
        rgb, torso = cut_below_hips(s["rgb"], ref, below)
        persons = estimator.estimate(np.ascontiguousarray(rgb))
        pred = persons[0].keypoints if persons else np.zeros((25, 3), np.float32)
        h = rgb.shape[0]
        for j in HIPS:
            if pred[j, 2] <= 0:
                rows.append({"id": s["id"], "joint": j, "missing": True})
                continue
            d = pred[j, :2] - ref[j, :2]
            rows.append({"id": s["id"], "joint": j, "missing": False, "error_over_h": float(np.hypot(*d) / h),
                         "error_over_torso": float(np.hypot(*d) / torso), "dy_over_h": float(d[1] / h),
                         "photo_h": h})
    found = [r for r in rows if not r["missing"]]
    err = np.array([r["error_over_h"] for r in found]) if found else np.array([np.inf])
    return {
        "cut_below_hips_torso_lengths": below, "hips": len(rows), "missing": len(rows) - len(found),
        "median_error_over_h": round(float(np.median(err)), 4), "max_error_over_h": round(float(err.max()), 4),
        "median_error_over_torso": round(float(np.median([r["error_over_torso"] for r in found])), 4)
        if found else None,
        "mean_dy_over_h": round(float(np.mean([r["dy_over_h"] for r in found])), 4) if found else None,
        "pck_0.05h": round(sum(r["error_over_h"] < 0.05 for r in found) / max(1, len(rows)), 3),
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--json", default=str(REPO / "bench" / "results" / "pose_cuts.json"))
    args = ap.parse_args(argv)

    from pipelines.preprocess.estimators.pose import PoseConfig, PoseEstimator

    samples = load_samples(Path(args.data))
    with PoseEstimator(PoseConfig()) as est:
        table = [hip_errors(samples, below, est) for below in CUTS]
        provenance = est.provenance
    print(f"{'cut (torso)':>12s}{'hips':>6s}{'miss':>6s}{'med ·H':>9s}{'max ·H':>9s}{'med ·torso':>12s}"
          f"{'mean dy ·H':>12s}{'PCK':>7s}")
    for t in table:
        cut = "uncut" if t["cut_below_hips_torso_lengths"] is None else t["cut_below_hips_torso_lengths"]
        print(f"{cut!s:>12s}{t['hips']:>6d}{t['missing']:>6d}{t['median_error_over_h']:>9.4f}"
              f"{t['max_error_over_h']:>9.4f}{t['median_error_over_torso'] or 0:>12.4f}"
              f"{t['mean_dy_over_h'] or 0:>12.4f}{t['pck_0.05h']:>7.3f}")
    result = {"what": __doc__.split("\n")[0], "estimator": provenance, "table": table,
              "env": {"cpu": _cpu(), "cpu_count": os.cpu_count(), "load_average_1min": os.getloadavg()[0],
                      "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
        print("wrote", args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
