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


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    u = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / u) if u else float("nan")


def evaluate(warp: str, shards: str, size: tuple[int, int], pairs_per_cat: int) -> tuple[dict, list]:
    import torch

    from gpvton_core import assembly as asm
    from gpvton_core.training.batch import collate
    from gpvton_core.warp import stack_parts
    from workers.render_actor import load_checkpoint
    from workers.train_loop import decode_pair, list_pairs

    net, meta = load_checkpoint(warp)
    net.eval()
    variant = meta.get("variant", "dresscode")
    pairs, grows = list_pairs(shards, variant)
    results, tiles = {}, []
    for cat in ("upper", "lower", "dresses"):
        ps = [p for p in pairs if grows[p["garment_id"]]["category"] == cat][:pairs_per_cat]
        if not ps:
            continue
        b = collate([decode_pair(p, grows, size, variant) for p in ps])
        parts = b["garment_parts"]
        with torch.inference_mode():
            gf = net.encode_garment(b["garment_input"], b["type_map"] if variant == "dresscode" else None)
            pf = net.encode_person(b["cond"])
            pm = stack_parts(parts[:, 0], parts[:, 1], parts[:, 2])
            o = net.decode(gf, pf, pm, b["preserve"], mode="inference")
            seg = asm.seg_argmax(o.seg_logits)
            pimg = stack_parts(*(b["garment"] * parts[:, k] for k in range(3)))
            cloth, label, edges = asm.assemble_warp(pimg, pm, o.last_flow, seg, b["preserve"],
                                                    torch.as_tensor(b["part_classes"]),
                                                    torch.as_tensor(b["extra_classes"]), return_part_masks=True)
        g_iou, acc, miou, p_iou = [], [], [], []
        for i in range(len(ps)):
            cls = np.asarray(b["part_classes"][i])
            lab = label[i, 0].numpy().round().astype(int)
            gt = b["person_garment_mask"][i, 0].numpy() > 0.5
            g_iou.append(_iou(np.isin(lab, cls), gt))
            s, t = seg[i, 0].numpy(), b["seg_gt"][i].numpy()
            acc.append(float((s == t).mean()))
            miou.append(float(np.nanmean([_iou(s == c, t == c) for c in np.unique(t)])))
            pk = [_iou(edges[i, k].numpy() > 0.5, b["person_parts"][i, k, 0].numpy() > 0.5)
                  for k in range(3) if b["garment_parts"][i, k].sum() > 0]
            p_iou.append(float(np.nanmean(pk)) if pk else float("nan"))
            img = ((b["image"][i].permute(1, 2, 0).numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8)
            flat = ((b["garment"][i].permute(1, 2, 0).numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8)
            w = ((cloth[i].permute(1, 2, 0).numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8)
            over = np.where(np.isin(lab, cls)[..., None], w, (img * 0.4 + 255 * 0.6).astype(np.uint8))
            tiles.append(np.concatenate([img, flat, w, over], 1))
        results[cat] = {"pairs": len(ps), "garment_iou": float(np.nanmean(g_iou)),
                        "parsing_acc": float(np.mean(acc)), "parsing_miou": float(np.nanmean(miou)),
                        "part_iou": float(np.nanmean(p_iou))}
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
