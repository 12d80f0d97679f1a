"""Training samples: shard-row arrays of a (person, worn garment) pair → tensors (§3.1, §8.5–8.8, §9).

The network inputs come from :mod:`gpvton_core.inputs` (the same builder the render path uses, so
training and inference cannot drift), the garment label / type map from :mod:`gpvton_core.assembly`
(as the inference pipeline derives them). This module adds what only training needs: the person-side
part masks (§8.7) and the masks DGT chooses from (§9.1).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .. import assembly as asm, inputs as I
from ..conditions import masks as cm

SHORT = cm.SHORT
ARMS = (15, 16)
LEGS_SHOES = (17, 18, 19, 20)


def _m(parsing: np.ndarray, labels: Sequence[int]) -> Tensor:
    return torch.from_numpy(cm.label_mask(parsing, labels).astype(np.float32))[None]


def resize_arrays(image: np.ndarray, labels: Sequence[np.ndarray], keypoints: Optional[np.ndarray],
                  size: tuple[int, int]) -> tuple[np.ndarray, list[np.ndarray], Optional[np.ndarray]]:
    """Resize a photo (bilinear), label maps (nearest) and keypoints (scaled) to ``size`` = (H, W)."""
    from PIL import Image

    h, w = image.shape[:2]
    if (h, w) == tuple(size):
        return image, list(labels), keypoints
    H, W = size
    img = np.asarray(Image.fromarray(image).resize((W, H), Image.Resampling.BILINEAR))
    labs = [np.asarray(Image.fromarray(l).resize((W, H), Image.Resampling.NEAREST)) for l in labels]
    kp = None
    if keypoints is not None:
        kp = np.asarray(keypoints, np.float32).reshape(25, 3).copy()
        miss = (kp[:, 0] <= 0) & (kp[:, 1] <= 0)
        kp[:, 0] *= W / w
        kp[:, 1] *= H / h
        kp[miss] = 0
    return img, labs, kp


def make_sample(person: dict[str, Any], garment: dict[str, Any], variant: str) -> dict[str, Any]:
    """One training pair. ``person``: image, parsing, densepose, keypoints, pc_ratio, person_id;
    ``garment``: image, mask, parts, category, garment_id. All arrays at the training size."""
    cat = garment["category"]
    parsing = np.asarray(person["parsing"]).astype(np.uint8)
    kp = np.asarray(person["keypoints"], np.float32).reshape(25, 3)
    prow = I.person_inputs(person["person_id"], person["image"], parsing, person["densepose"], kp, cat, variant)
    p = prow.inputs                                                                    # one row
    g = I.garment_inputs(garment["garment_id"], garment["image"], garment["mask"], garment["parts"], cat, variant)
    garment_rgb = (g.image * g.mask)[0]                                                # 3×H×W RGB·mask
    label = asm.garment_label(g.parts, variant, g.category)[0]                         # 1×H×W
    parts = torch.from_numpy(cm.person_part_masks(parsing, cat))[:, None]              # 3×1×H×W
    gmask = parts.amax(0)                                                              # 1×H×W
    palm = torch.from_numpy(np.asarray(cm.palm_mask(parsing, kp), dtype=np.float32))
    palm = palm.reshape(1, *parsing.shape)
    if variant == "dresscode" and cat != "upper":
        region_full = region_short = _m(parsing, cm.preserve_labels(variant, cat, "warp"))
    else:
        region_full, region_short = _m(parsing, cm.FULL), _m(parsing, SHORT)
    part_cls, extra_cls = asm.part_classes(variant, cat)
    r = person.get("pc_ratio")
    return {
        "person_id": person["person_id"], "garment_id": garment["garment_id"], "category": cat,
        "pc_ratio": float("nan") if r is None or (isinstance(r, float) and np.isnan(r)) else float(r),
        # network inputs (§3.1)
        "cond": p.cond()[0], "preserve": p.preserve_warp[0], "garment_input": torch.cat((garment_rgb, label), 0),
        "garment": garment_rgb, "garment_mask": g.mask[0], "garment_parts": g.parts[0][:, None],
        "type_map": asm.type_map(g.category, tuple(parsing.shape))[0],
        # person side (§8.7)
        "image": p.image[0], "person_parts": parts, "person_garment": p.image[0] * gmask,
        "person_garment_mask": gmask, "seg_gt": prow.targets[0],
        # DGT ingredients (§9.1)
        "palm": palm, "arms": _m(parsing, ARMS), "region_full": region_full, "region_short": region_short,
        "legs_shoes": _m(parsing, LEGS_SHOES), "pants_left": _m(parsing, (9,)), "pants_right": _m(parsing, (10,)),
        "skirt_dominant": float((parsing == 13).sum() > np.isin(parsing, (9, 10)).sum()),
        # generator stage (§8.8)
        "preserve_gen": p.preserve_gen[0], "pose": p.pose[0], "skin": p.skin[0],
        "part_classes": part_cls, "extra_classes": extra_cls,
    }


def collate(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in samples[0].items():
        vals = [s[k] for s in samples]
        if isinstance(v, Tensor):
            out[k] = torch.stack(vals)
        elif k in ("pc_ratio", "skirt_dominant"):
            out[k] = torch.tensor(vals, dtype=torch.float32)
        else:
            out[k] = vals
    return out


def level_resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize without antialiasing (identity at the same size)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
