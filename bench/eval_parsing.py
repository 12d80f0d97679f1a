"""Derived 29-label parsing vs GP-VTON's released parsing on the shared VITON-HD items.

    python bench/eval_parsing.py [--root ../shared/data/vitonhd] [--json bench/results/parsing.json]
                                 [--sheet /tmp/parsing_sheet.png]

For every test id with GP-VTON's own parsing (``test/parse-bytedance_512/ID.png``, 384×512,
R=G=B=label) the LIP parsing (``test/image-parse-v3``, nearest-resized to 384×512) and the
OpenPose keypoints (``test/openpose_json``, scaled 768×1024 → 384×512) go through
:func:`gpvton_core.conditions.parsing.from_lip`. Items where the two parsings disagree on the garment
type (:func:`garment_types`: torso class 5/6/7 and pants vs skirt) are reported and left out of
the means, since a class swap there is not a split error.

Printed / written:

* per item, the IoU of every scored class present in either parsing
  (:data:`~gpvton_core.conditions.parsing_checks.SCORED_CLASSES`: torso, pants, neck, arms, sleeves);
* ``class_mean`` — per class, the mean over the items where it occurs, and ``miou``, the mean of
  those (the project's measure, kept in the ``parsing`` module docstring);
* ``pooled`` — per class, Σ intersection / Σ union over the items (large items weigh more);
* ``ceiling`` — the same measure when the derived garment regions keep their outline but take
  the reference's labels inside it (sleeve / torso and left / right pants splits made perfect, and
  the left / right side of arm skin, so a side swap of LIP's arms would show here): how far a
  better split alone could go; the rest is where LIP's outlines differ from GP-VTON's.

The JSON adds the CPU model (and ``bench/sysinfo.py``'s machine block) and the derivation version.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from gpvton_core.conditions import DERIVATION_VERSION  # noqa: E402
from gpvton_core.conditions import labels  # noqa: E402
from gpvton_core.conditions import parsing as ps  # noqa: E402
from gpvton_core.conditions import parsing_checks  # noqa: E402

SIZE = (512, 384)
# Groups whose split (not outline) the derivation decides: garment torso + sleeves, pants halves;
# the arms' left / right (taken from LIP) could be re-decided from the pose the same way.
SPLIT_GROUPS = ((5, 21, 22), (6, 24, 25), (7, 26, 27), (9, 10), (15, 16))
SHORT = {9: "l_pants", 10: "r_pants", 15: "l_arm", 16: "r_arm", 21: "l_sleeve", 22: "r_sleeve",
         24: "l_sl_dr", 25: "r_sl_dr", 26: "l_sl_coat", 27: "r_sl_coat"}


def cpu_model() -> str:
    from sysinfo import machine_info   # the one machine description every bench JSON carries

    return machine_info()["cpu_model"]


def load_items(root: Path) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """(id, LIP parsing 512×384, BODY_25 keypoints at 512×384, GP reference 512×384) per id."""
    from PIL import Image

    from gpvton_core.conditions.pose import body25_from_openpose, scale_keypoints

    test = root / "test"
    out = []
    for ref_path in sorted((test / "parse-bytedance_512").glob("*.png")):
        i = ref_path.stem
        ref = np.asarray(Image.open(ref_path).convert("RGB"))[..., 0]
        lip_img = Image.open(test / "image-parse-v3" / f"{i}.png")
        full = (lip_img.height, lip_img.width)
        lip = np.asarray(lip_img.resize(SIZE[::-1], Image.NEAREST))
        k = body25_from_openpose(json.loads((test / "openpose_json" / f"{i}_keypoints.json").read_text()))
        out.append((i, lip, scale_keypoints(k, full, SIZE), ref))
    return out


def garment_types(gp: np.ndarray, min_fraction: float = 0.2) -> tuple[int | None, str | None]:
    """(torso class 5/6/7 with its sleeves, "pants"/"skirt") worn; None where nothing is worn.

    A type counts when it holds at least ``min_fraction`` of its group's pixels.
    """
    a = np.asarray(gp)
    tops = {t: int(np.isin(a, g).sum()) for t, g in ((5, (5, 21, 22)), (6, (6, 24, 25)), (7, (7, 26, 27)))}
    top = max(tops, key=tops.get)
    n_top = sum(tops.values())
    bottoms = {"pants": int(np.isin(a, (9, 10)).sum()), "skirt": int((a == 13).sum())}
    bottom = max(bottoms, key=bottoms.get)
    n_bottom = sum(bottoms.values())
    return (top if n_top and tops[top] >= min_fraction * n_top else None,
            bottom if n_bottom and bottoms[bottom] >= min_fraction * n_bottom else None)


def oracle_split(derived: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Derived parsing whose split groups take the reference's label where it is in the same group."""
    out = derived.copy()
    for g in SPLIT_GROUPS:
        m = np.isin(derived, g) & np.isin(ref, g)
        out[m] = ref[m]
    return out


def _summary(per_item: dict[str, dict[int, float]], inter: dict, union: dict) -> dict:
    per_class: dict[int, list[float]] = {}
    for ious in per_item.values():
        for c, v in ious.items():
            per_class.setdefault(c, []).append(v)
    class_mean = {c: float(np.mean(v)) for c, v in sorted(per_class.items())}
    pooled = {c: inter[c] / union[c] for c in sorted(union) if union[c]}
    return {"class_mean": class_mean, "miou": parsing_checks.mean_iou(class_mean),
            "pooled": pooled, "pooled_miou": parsing_checks.mean_iou(pooled)}


def evaluate(items) -> dict:
    per_item, ceil_item, skipped = {}, {}, {}
    inter = {c: 0 for c in parsing_checks.SCORED_CLASSES}
    union = dict(inter)
    cinter, cunion = dict(inter), dict(inter)
    for i, lip, k, ref in items:
        gp = ps.from_lip(lip, k)
        parsing_checks.validate(gp)
        types = garment_types(gp), garment_types(ref)
        if types[0] != types[1]:
            skipped[i] = {"derived": list(types[0]), "gpvton": list(types[1])}
            continue
        per_item[i] = parsing_checks.class_iou(gp, ref, parsing_checks.SCORED_CLASSES)
        oracle = oracle_split(gp, ref)
        ceil_item[i] = parsing_checks.class_iou(oracle, ref, parsing_checks.SCORED_CLASSES)
        for c in parsing_checks.SCORED_CLASSES:
            for p, I, U in ((gp, inter, union), (oracle, cinter, cunion)):
                a, b = p == c, ref == c
                I[c] += int((a & b).sum())
                U[c] += int((a | b).sum())
    res = {"items": sorted(per_item), "skipped_type_mismatch": skipped,
           "per_item": {i: {str(c): v for c, v in d.items()} for i, d in per_item.items()}}
    s = _summary(per_item, inter, union)
    c = _summary(ceil_item, cinter, cunion)
    res.update({k: ({str(a): b for a, b in v.items()} if isinstance(v, dict) else v) for k, v in s.items()})
    res["ceiling"] = {"class_mean": {str(a): b for a, b in c["class_mean"].items()}, "miou": c["miou"]}
    return res


def table(res: dict) -> str:
    """Per-item IoU table (rows: items, then mean / pooled / ceiling; columns: classes)."""
    classes = sorted({int(c) for d in res["per_item"].values() for c in d})
    names = [SHORT.get(c, labels.LABEL_NAMES[c])[:8] for c in classes]
    lines = ["item      " + " ".join(f"{n:<8}" for n in names) + " mIoU"]

    def row(name: str, d: dict, m: float | None = None) -> str:
        cells = " ".join(f"{d[str(c)]:<8.3f}" if str(c) in d else f"{'-':<8}" for c in classes)
        if m is None:
            m = float(np.mean(list(d.values()))) if d else float("nan")
        return f"{name:<9} {cells} {m:.3f}"

    for i, d in res["per_item"].items():
        lines.append(row(i, d))
    lines.append(row("mean", res["class_mean"], res["miou"]))
    lines.append(row("pooled", res["pooled"], res["pooled_miou"]))
    lines.append(row("ceiling", res["ceiling"]["class_mean"], res["ceiling"]["miou"]))
    return "\n".join(lines)


def sheet(items, path: str) -> None:
    """Per item: LIP-derived parsing | GP-VTON parsing | disagreement (ref colours where they differ)."""
    from PIL import Image

    rng = np.random.RandomState(0)
    pal = rng.randint(40, 255, (labels.NUM_LABELS, 3)).astype(np.uint8)
    pal[0] = 0
    rows = []
    for _, lip, k, ref in items:
        gp = ps.from_lip(lip, k)
        diff = np.where((gp != ref)[..., None], pal[ref], 0).astype(np.uint8)
        rows.append(np.concatenate([pal[gp], pal[ref], diff], 1))
    Image.fromarray(np.concatenate(rows, 0)).save(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=REPO.parent / "shared" / "data" / "vitonhd")
    ap.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "parsing.json")
    ap.add_argument("--sheet")
    args = ap.parse_args(argv)
    items = load_items(args.root)
    if not items:
        print(f"no parse-bytedance_512 items under {args.root}", file=sys.stderr)
        return 1
    res = evaluate(items)
    from sysinfo import machine_info

    machine = machine_info()
    res = {"derivation_version": DERIVATION_VERSION, "cpu": cpu_model(), "machine": machine, "size": list(SIZE),
           "classes": {str(c): labels.LABEL_NAMES[c] for c in parsing_checks.SCORED_CLASSES}, **res}
    print(table(res))
    if res["skipped_type_mismatch"]:
        print("skipped (garment type differs):", res["skipped_type_mismatch"])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=1) + "\n")
    if args.sheet:
        sheet(items, args.sheet)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
