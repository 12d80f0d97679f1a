"""Shard-row arrays → one-row :mod:`gpvton_core.tryon_batches` inputs (GPVTON.md §3.1, §8).

Pure: NumPy arrays in (decoded PNGs of a shard row), tensors out; no files, no network. The
render worker and the training loop both build their inputs here, with the condition functions
of :mod:`gpvton_core.conditions`, so the two cannot drift.

* :func:`person_inputs` — photo ``H×W×3`` uint8, 29-label parsing ``H×W``, DensePose part index
  ``H×W`` and BODY_25 keypoints ``25×3`` → :class:`PersonRow`: a one-row
  :class:`~gpvton_core.tryon_batches.PersonInputs` for one garment category and dataset variant
  (the preserve masks depend on both) plus the person-side targets (§8.7) of the paired
  parse score.
* :func:`garment_inputs` — garment RGB, mask ``{0,255}`` and part map (0 bg, 1 left, 2 middle,
  3 right; shard convention) → a one-row :class:`~gpvton_core.tryon_batches.GarmentInputs` (the
  part label and the Dress Code type map are derived from it by the pipeline).

Rows are batched with ``PersonInputs.cat`` / ``GarmentInputs.cat``. Malformed arrays raise
``ValueError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from .conditions import densepose as cdp, garment as cg, masks as cm, pose as cpose
from .conditions.labels import CATEGORIES
from .tryon_batches import GarmentInputs, PersonInputs



@dataclass
class PersonRow:
    """One person photo prepared for one garment category."""

    person_id: str
    inputs: PersonInputs  # one row (category set)
    targets: Tensor       # 1×H×W long: person-side classes (§8.7), for the paired parse score
    background: Optional[Tensor] = None   # 1×1×H×W {0,1}: parsing label 0, for paste-back delivery

    @staticmethod
    def cat(items: Sequence["PersonRow"]) -> tuple[PersonInputs, Tensor]:
        """(batched inputs, B×H×W targets)."""
        return PersonInputs.cat([x.inputs for x in items]), torch.cat([x.targets for x in items])


def _rgb(image: np.ndarray) -> Tensor:
    """uint8 H×W×3 → 1×3×H×W in [−1,1] ((u8/255 − 0.5)/0.5)."""
    return (torch.from_numpy(np.array(image[..., :3], dtype=np.uint8)).permute(2, 0, 1)[None].float() / 255
            - 0.5) / 0.5


def person_targets(parsing: np.ndarray, variant: str, category: str) -> Tensor:
    """Person-side class map H×W long (§8.7): :func:`gpvton_core.conditions.masks.seg_target`."""
    return torch.from_numpy(cm.seg_target(np.asarray(parsing), variant, category))


def person_inputs(person_id: str, image: np.ndarray, parsing: np.ndarray, densepose: np.ndarray,
                  keypoints: np.ndarray, category: str, variant: str) -> PersonRow:
    """Build a person's network inputs for ``category`` (raises ValueError on malformed arrays)."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}")
    h, w = parsing.shape[:2]
    if image.shape[:2] != (h, w) or densepose.shape[:2] != (h, w):
        raise ValueError(f"person {person_id}: image {image.shape[:2]}, parsing {(h, w)} and "
                         f"densepose {densepose.shape[:2]} sizes differ")
    kp = np.asarray(keypoints, dtype=np.float32)
    if kp.size != 75:
        raise ValueError(f"person {person_id}: expected 75 keypoint values, got {kp.size}")
    kp = kp.reshape(25, 3)
    parsing = np.asarray(parsing).astype(np.uint8)
    dp = np.asarray(densepose).astype(np.int64)
    if dp.size and (dp.min() < 0 or dp.max() >= cdp.NUM_PARTS):
        raise ValueError(f"person {person_id}: DensePose part index outside 0..{cdp.NUM_PARTS - 1}")
    pres_w = cm.preserve_mask(parsing, kp, variant, category, "warp")
    same = cm.preserve_labels(variant, category, "gen") == cm.preserve_labels(variant, category, "warp")
    pres_g = pres_w if same else cm.preserve_mask(parsing, kp, variant, category, "gen")
    skin = torch.from_numpy(cm.skin_colour(np.ascontiguousarray(image[..., :3]), parsing, variant))
    skin = torch.nan_to_num(skin, nan=0.0)  # empty skin region: mid grey instead of NaN
    row = PersonInputs(
        image=_rgb(image), densepose=torch.from_numpy(dp)[None, None],
        pose=torch.from_numpy(cpose.pose_map(kp, h, w))[None],
        preserve_warp=torch.from_numpy(pres_w)[None, None], preserve_gen=torch.from_numpy(pres_g)[None, None],
        skin=skin[None], category=[category])
    background = torch.from_numpy((parsing == 0).astype(np.float32))[None, None]
    return PersonRow(person_id, row, person_targets(parsing, variant, category)[None], background)


def garment_inputs(garment_id: str, image: np.ndarray, mask: np.ndarray, parts: np.ndarray,
                   category: str, variant: str) -> GarmentInputs:
    """Build a garment's network inputs (parts: 0 bg, 1 left, 2 middle, 3 right)."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}")
    h, w = mask.shape[:2]
    if image.shape[:2] != (h, w) or parts.shape[:2] != (h, w):
        raise ValueError(f"garment {garment_id}: image, mask and parts sizes differ")
    m = torch.from_numpy(cg.binarize_mask(mask).astype(np.float32))[None, None]
    return GarmentInputs(image=_rgb(image), mask=m, parts=torch.from_numpy(cm.garment_part_masks(parts))[None],
                         category=[category])


__all__ = ["CATEGORIES", "PersonRow", "person_inputs", "garment_inputs", "person_targets"]
