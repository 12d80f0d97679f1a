"""DensePose part index: colour inversion and mask+skeleton approximation against the Dress Code
grey maps (the six items of ../shared/data that ship both ``dense/ID_5.png`` and the colour
rendering ``image-densepose/ID_0.jpg``).

    python bench/eval_densepose.py [--data ../shared/data] [--json bench/results/densepose.json]
                                   [--no-segmenter]

Agreement = share of body pixels (reference index > 0) whose part index agrees. Printed and
written per item and as the mean over items:

* ``inversion``: ``index_from_rendering`` at 512×384 as derive.py computes it (rendering
  ``resize_rgb(..., mode="crop")``, bicubic; reference nearest) and at the native 768×1024, without
  and with the keypoints (Dress Code COCO-18 → BODY_25); ``previous`` = the former medians palette
  with a 5×5 majority filter.
* ``faithful_rendering``: the same inversion on a rendering made *from the reference* (parula,
  JPEG q95 4:2:0 like the shipped files) — the accuracy of the inversion itself.
* ``data``: why the shipped rendering cannot reach the reference: silhouette XOR and reference
  body pixels that are black in the rendering (shares of the body), and the region oracle (every
  connected colour region of the inversion relabelled with its most frequent reference label).
* ``approximation``: ``approximate_from_mask`` at 512×384 with the reference foreground
  (``ref > 0``) and with MediaPipe masks of the photo (selfie segmentation and BlazePose's mask,
  threshold 0.5), each without and with the parsing (Dress Code ATR label map → 29-label GP
  parsing); ``coverage`` = share of body pixels inside the mask.
* ``vitonhd``: no reference index exists; the share of flat rendering pixels within 6 RGB levels of
  a palette colour (same colormap?) and the approximation's agreement with the inverted rendering.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from gpvton_core.conditions import densepose as dp  # noqa: E402
from gpvton_core.conditions import densepose_approximation as dpa  # noqa: E402
from gpvton_core.conditions import parsing as ps  # noqa: E402
from gpvton_core.conditions import pose as po  # noqa: E402
from gpvton_core.conditions.resize import resize_labels, resize_rgb  # noqa: E402

SIZE = (512, 384)
# The palette before this version (per-part medians; 7/8/9 one colour) — for the comparison only.
PREVIOUS_PALETTE = np.array([
    [0, 0, 0], [30, 62, 170], [20, 80, 194], [4, 98, 224], [8, 110, 221], [13, 122, 215],
    [20, 133, 213], [11, 166, 196], [6, 166, 199], [6, 166, 198], [22, 173, 184], [55, 180, 158],
    [55, 185, 159], [86, 187, 145], [114, 189, 130], [145, 191, 116], [170, 190, 105],
    [192, 189, 96], [215, 186, 87], [228, 191, 73], [240, 198, 60], [252, 207, 46],
    [250, 220, 36], [251, 235, 25], [248, 251, 14]], dtype=np.float32)


def cpu_model() -> str:
    from sysinfo import machine_info   # the one machine description every bench JSON carries

    return machine_info()["cpu_model"]


def previous_inversion(rgb: np.ndarray) -> np.ndarray:
    a = rgb.reshape(-1, 3).astype(np.float32)
    pal = PREVIOUS_PALETTE
    d = (a * a).sum(1, keepdims=True) - 2 * a @ pal.T + (pal * pal).sum(1)
    lab = (len(pal) - 1 - d[:, ::-1].argmin(1)).astype(np.uint8).reshape(rgb.shape[:2])  # ties → higher
    return dp.majority_filter(lab, 5)


def region_oracle(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    out = np.zeros_like(ref)
    for lab in np.unique(pred):
        comp, n = dp.connected_components(pred == lab)
        idx = comp.ravel()
        r = ref.ravel()
        counts = np.zeros((n + 1, dp.NUM_PARTS), np.int64)
        np.add.at(counts, (idx, r), 1)
        best = counts.argmax(1)
        sel = idx > 0
        out.ravel()[sel] = best[idx[sel]]
    return out


def faithful(ref: np.ndarray) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(dp.RENDER_PALETTE[ref].astype(np.uint8)).save(buf, "JPEG", quality=95, subsampling=2)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def dresscode_items(root: Path) -> list[dict]:
    items = []
    for f in sorted(root.glob("*/dense/*_5.png")):
        cat, i, d = f.parent.parent.name, f.name[:-6], f.parent.parent
        kp = json.loads((d / "keypoints" / f"{i}_2.json").read_text())["keypoints"]
        items.append({
            "name": f"{cat}/{i}",
            "ref": np.asarray(Image.open(f)),
            "rendering": np.asarray(Image.open(d / "image-densepose" / f"{i}_0.jpg").convert("RGB")),
            "photo": np.asarray(Image.open(d / "images" / f"{i}_0.jpg").convert("RGB")),
            "atr": np.asarray(Image.open(d / "label_maps" / f"{i}_4.png")),
            "kps": po.coco18_to_body25(kp),             # COCO-18 computed at 384×512
        })
    return items


def fg(pred: np.ndarray, ref: np.ndarray) -> float:
    return round(dp.agreement(pred, ref, foreground_only=True), 4)


def evaluate_inversion(it: dict) -> dict:
    ref, rgb = it["ref"], it["rendering"]
    native = ref.shape
    r512, g512 = resize_labels(ref, SIZE), resize_rgb(rgb, SIZE, mode="crop")
    k512 = po.scale_keypoints(it["kps"], (512, 384), SIZE)
    kn = po.scale_keypoints(it["kps"], (512, 384), native)
    p512 = dp.index_from_rendering(g512)
    p512k = dp.index_from_rendering(g512, keypoints=k512)
    res = {
        "512x384": {"body": fg(p512, r512), "body_keypoints": fg(p512k, r512),
                    "all_pixels_keypoints": round(dp.agreement(p512k, r512), 4),
                    "previous": fg(previous_inversion(g512), r512)},
        "native": {"body": fg(dp.index_from_rendering(rgb), ref),
                   "body_keypoints": fg(dp.index_from_rendering(rgb, keypoints=kn), ref),
                   "previous": fg(previous_inversion(rgb), ref)},
    }
    syn = faithful(ref)
    res["faithful_rendering"] = {"512x384": fg(dp.index_from_rendering(resize_rgb(syn, SIZE)), r512),
                                 "native": fg(dp.index_from_rendering(syn), ref)}
    body = ref > 0
    lit = rgb.max(-1) > 40
    res["data"] = {"silhouette_xor": round(float((body ^ lit).sum() / body.sum()), 4),
                   "body_black_in_rendering": round(float((body & (rgb.max(-1) < 15)).sum() / body.sum()), 4),
                   "region_oracle_512": fg(region_oracle(p512, r512), r512)}
    return res


def evaluate_approximation(it: dict, masks: dict[str, np.ndarray]) -> dict:
    r512 = resize_labels(it["ref"], SIZE)
    k512 = po.scale_keypoints(it["kps"], (512, 384), SIZE)
    gp = ps.from_atr(resize_labels(it["atr"], SIZE), k512)
    out = {}
    for name, m in {"ref_foreground": r512 > 0, **masks}.items():
        out[name] = {"body": fg(dpa.approximate_from_mask(m, k512), r512),
                     "body_parsing": fg(dpa.approximate_from_mask(m, k512, parsing=gp), r512),
                     "coverage": round(float(m[r512 > 0].mean()), 4)}
    return out


def segmenter_masks(photo512: np.ndarray, segmenters: dict) -> dict[str, np.ndarray]:
    return {name: seg.mask(photo512) > 0.5 for name, seg in segmenters.items()}


def vitonhd(root: Path, segmenters: dict) -> dict:
    test = root / "test"
    out = {}
    for f in sorted((test / "image-densepose").glob("*.jpg")):
        i = f.stem
        rgb = np.asarray(Image.open(f).convert("RGB"))
        kj = json.loads((test / "openpose_json" / f"{i}_keypoints.json").read_text())
        k = po.scale_keypoints(po.body25_from_openpose(kj), rgb.shape[:2], SIZE)
        c = rgb.astype(np.float32)
        d = np.sqrt(((c[:, :, None] - dp.RENDER_PALETTE) ** 2).sum(-1)).min(-1)
        g = np.zeros(rgb.shape[:2], np.float32)
        y = c @ np.array([0.299, 0.587, 0.114], np.float32)
        for dy, dx in ((0, 1), (1, 0)):
            g = np.maximum(g, np.abs(np.roll(y, (dy, dx), (0, 1)) - y))
        flat = (g < 2) & (rgb.max(-1) > 40)
        inv = dp.index_from_rendering(resize_rgb(rgb, SIZE), keypoints=k)
        row = {"flat_pixels_on_palette": round(float((d[flat] <= 6).mean()), 4),
               "facing": dpa.facing(k),
               "approx_vs_inversion_on_its_foreground": fg(dpa.approximate_from_mask(inv > 0, k), inv)}
        if segmenters:
            photo = resize_rgb(np.asarray(Image.open(test / "image" / f"{i}.jpg").convert("RGB")), SIZE)
            for name, m in segmenter_masks(photo, segmenters).items():
                row[f"approx_vs_inversion_{name}_mask"] = fg(dpa.approximate_from_mask(m, k), inv)
        out[i] = row
    return out


def mean_of(rows: dict, path: tuple[str, ...]) -> float:
    vals = []
    for r in rows.values():
        for p in path:
            r = r[p]
        vals.append(r)
    return round(float(np.mean(vals)), 4)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--json", default=str(REPO / "bench" / "results" / "densepose.json"))
    ap.add_argument("--no-segmenter", action="store_true", help="skip the MediaPipe masks")
    args = ap.parse_args(argv)
    data = Path(args.data)
    t0 = time.time()
    segmenters: dict = {}
    seg_note = "MediaPipe masks skipped (--no-segmenter)"
    if not args.no_segmenter:
        try:
            from pipelines.preprocess.estimators.segmenter import PersonSegmenter
            segmenters = {"selfie": PersonSegmenter("selfie"), "blazepose": PersonSegmenter("pose")}
            seg_note = {k: s.provenance for k, s in segmenters.items()}
        except Exception as exc:  # noqa: BLE001 - the bench still reports the rest
            seg_note = f"segmenter unavailable: {exc}"

    inv, approx = {}, {}
    for it in dresscode_items(data / "dresscode"):
        inv[it["name"]] = evaluate_inversion(it)
        masks = segmenter_masks(resize_rgb(it["photo"], SIZE), segmenters) if segmenters else {}
        approx[it["name"]] = evaluate_approximation(it, masks)
    vh = vitonhd(data / "vitonhd", segmenters) if (data / "vitonhd").exists() else {}
    for s in segmenters.values():
        s.close()

    keys = ("body", "body_keypoints", "previous")
    summary = {
        "inversion_512x384": {k: mean_of(inv, ("512x384", k)) for k in keys},
        "inversion_native": {k: mean_of(inv, ("native", k)) for k in keys},
        "faithful_rendering": {k: mean_of(inv, ("faithful_rendering", k)) for k in ("512x384", "native")},
        "region_oracle_512": mean_of(inv, ("data", "region_oracle_512")),
        "approximation": {m: {k: mean_of(approx, (m, k)) for k in ("body", "body_parsing", "coverage")}
                          for m in next(iter(approx.values()))},
    }
    report = {"cpu": cpu_model(), "python": platform.python_version(), "size": list(SIZE),
              "metric": "share of body pixels (reference index > 0) with the same part index; "
                        "mean over items",
              "segmenter": seg_note, "summary": summary, "inversion": inv, "approximation": approx,
              "vitonhd": vh, "seconds": round(time.time() - t0, 1)}

    print(f"{'item':20s} {'inv512':>7s} {'+kp':>7s} {'prev':>7s} {'native':>7s} {'+kp':>7s} "
          f"{'faithful':>8s} {'oracle':>7s} {'xor':>6s} | approx: ref-fg (+parsing), masks")
    for name, r in inv.items():
        a = approx[name]
        masks = "  ".join(f"{m} {v['body']:.3f}/{v['body_parsing']:.3f} cov {v['coverage']:.3f}"
                          for m, v in a.items())
        lo, na = r["512x384"], r["native"]
        print(f"{name:20s} {lo['body']:7.4f} {lo['body_keypoints']:7.4f} {lo['previous']:7.4f} "
              f"{na['body']:7.4f} {na['body_keypoints']:7.4f} "
              f"{r['faithful_rendering']['512x384']:8.4f} {r['data']['region_oracle_512']:7.4f} "
              f"{r['data']['silhouette_xor']:6.3f} | {masks}")
    print("mean:", json.dumps(summary))
    for i, r in vh.items():
        print("vitonhd", i, json.dumps(r))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    print("wrote", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
