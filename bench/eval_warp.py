"""Paired-warp quality of a warp checkpoint on training-style pairs, per category (demo-model QA).

    python bench/eval_warp.py --warp W.safetensors --shards DIR [--resolution 256x192]
                              [--pairs 8] [--sheet /tmp/warp_sheet.png] [--json OUT]

For up to ``--pairs`` (person, worn garment) pairs per category it runs the warp in inference mode
with the test-time assembly (as ``gpvton render`` does) and reports:

* ``garment_iou``: IoU of the assembled warped garment (label > 0 in the part classes) with the
  person's worn-garment region — does the garment land where it is worn;
* ``parsing_acc`` / ``parsing_miou``: the global parsing against the person's parsing target;
* ``part_iou``: mean IoU of the warped part masks with the person's part masks (parts present).

The optional sheet shows, per pair: person | flat garment | warped garment | warped over person.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def evaluate(warp: str, shards: str, size: tuple[int, int], pairs_per_cat: int) -> tuple[dict, list]:
    from gpvton_core.checkpoints import build_from_checkpoint
    from gpvton_core.training import paired as P
    from gpvton_core.training.batch import collate
    from workers.train.data import decode_pair, list_pairs

    net, meta = build_from_checkpoint(warp)
    net.eval()
    pairs, grows = list_pairs(shards, net.variant)
    results, tiles = {}, []
    for cat in ("upper", "lower", "dresses"):
        ps = [p for p in pairs if grows[p["garment_id"]]["category"] == cat][:pairs_per_cat]
        if not ps:
            continue
        b = collate([decode_pair(p, grows, size, net.variant) for p in ps])
        w = P.warp_batch(net, b)
        parsing = P.parsing_scores(w["seg"], b)
        results[cat] = {"pairs": len(ps), "garment_iou": float(np.nanmean(P.garment_iou(w["label"], b))),
                        "parsing_acc": float(np.mean([a for a, _ in parsing])),
                        "parsing_miou": float(np.mean([m for _, m in parsing])),
                        "part_iou": float(np.nanmean(P.part_iou(w["part_masks"], b)))}
        for i in range(len(ps)):
            rgb = lambda t: ((t.permute(1, 2, 0).numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8)  # noqa: E731
            img, cloth = rgb(b["image"][i]), rgb(w["cloth"][i])
            on = np.isin(w["label"][i, 0].numpy().round(), b["part_classes"][i])[..., None]
            over = np.where(on, cloth, (img * 0.4 + 255 * 0.6).astype(np.uint8))
            tiles.append(np.concatenate([img, rgb(b["garment"][i]), cloth, over], 1))
    return {"warp": warp, "step": meta.get("step"), "resolution": list(size), "categories": results}, tiles


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warp", required=True)
    ap.add_argument("--shards", required=True)
    ap.add_argument("--resolution", default="256x192")
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--sheet")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    h, w = (int(x) for x in args.resolution.lower().split("x"))
    res, tiles = evaluate(args.warp, args.shards, (h, w), args.pairs)
    print(json.dumps(res, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    if args.sheet and tiles:
        from PIL import Image

        Image.fromarray(np.concatenate(tiles, 0)).save(args.sheet)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
