"""The test-time warp of training pairs, and its quality: on a training pair the person already wears
the garment, so the test-time warp of the flat garment has a ground truth — the person's own garment
region. :func:`assembled_warp` is also what the generator stage trains on
(:mod:`gpvton_core.training.generator_forward`); the scores check that a trained warper (e.g. the
shipped demo model) really warps, in tests and ``bench/eval_warp.py``."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .. import assembly as asm
from ..warp import LFGPWarp, stack_parts


def assembled_warp(net: LFGPWarp, b: dict[str, Any]) -> dict[str, Tensor]:
    """The warp + test-time assembly of a collated training batch, as ``gpvton render`` runs them:
    at 1024 rows and up the warp sees its inputs halved and its flow and parsing are brought back
    (:func:`~gpvton_core.assembly.half_res_warp`), the assembly runs at full resolution.

    Returns ``cloth`` B×3, ``label`` B×1 (float labels), ``seg`` B×1 (argmax parsing) and
    ``part_masks`` B×3 (warped part masks before the parsing selection). No grad mode of its own:
    callers choose (the generator stage trains on these warps, so they must not be inference tensors)."""
    half = asm.half_res_warp(b["garment"].shape[-2])

    def low(x: Tensor, bilinear: bool = False) -> Tensor:
        return asm.warp_resolution(x, half, bilinear)

    parts = b["garment_parts"]
    gin = b["garment_input"]
    gf = net.encode_garment(torch.cat((low(gin[:, :3], True), low(gin[:, 3:])), 1),
                            low(b["type_map"], True) if net.needs_type_map else None)
    pf = net.encode_person(low(b["cond"]))
    o = net.decode(gf, pf, stack_parts(*(low(parts[:, k]) for k in range(3))), low(b["preserve"]), mode="inference")
    flow, seg = asm.full_resolution(o.last_flow, asm.seg_argmax(o.seg_logits), half)
    pimg = stack_parts(*(b["garment"] * parts[:, k] for k in range(3)))
    pm = stack_parts(parts[:, 0], parts[:, 1], parts[:, 2])
    dev = b["garment"].device
    cloth, label, edges = asm.assemble_warp(pimg, pm, flow, seg, b["preserve"],
                                            torch.as_tensor(b["part_classes"], device=dev),
                                            torch.as_tensor(b["extra_classes"], device=dev), return_part_masks=True)
    return {"cloth": cloth, "label": label, "seg": seg, "part_masks": edges}


@torch.inference_mode()
def warp_batch(net: LFGPWarp, b: dict[str, Any]) -> dict[str, Tensor]:
    """:func:`assembled_warp` in inference mode: what the quality measures below score."""
    return assembled_warp(net, b)


def _iou(a: Tensor, b: Tensor) -> float:
    union = (a | b).sum().item()
    return (a & b).sum().item() / union if union else float("nan")


def garment_iou(label: Tensor, b: dict[str, Any]) -> list[float]:
    """Per pair: IoU of the assembled garment (label in the pair's part classes) with the region the
    person's own garment covers. Near 0 for an untrained or collapsed warper."""
    out = []
    for i in range(label.shape[0]):
        lab = label[i, 0].round().long()
        warped = torch.isin(lab, torch.as_tensor(b["part_classes"][i]))
        out.append(_iou(warped, b["person_garment_mask"][i, 0] > 0.5))
    return out


def parsing_scores(seg: Tensor, b: dict[str, Any]) -> list[tuple[float, float]]:
    """Per pair: (pixel accuracy, mean IoU over the target's classes) of the global parsing."""
    out = []
    for i in range(seg.shape[0]):
        s, t = seg[i, 0].long(), b["seg_gt"][i].long()
        ious = [_iou(s == c, t == c) for c in t.unique().tolist()]
        out.append(((s == t).float().mean().item(), sum(ious) / len(ious)))
    return out


def part_iou(part_masks: Tensor, b: dict[str, Any]) -> list[float]:
    """Per pair: mean IoU of the warped part masks with the person's part masks (parts present)."""
    out = []
    for i in range(part_masks.shape[0]):
        ks = [k for k in range(3) if b["garment_parts"][i, k].sum() > 0]
        vals = [_iou(part_masks[i, k] > 0.5, b["person_parts"][i, k, 0] > 0.5) for k in ks]
        out.append(sum(vals) / len(vals) if vals else float("nan"))
    return out
