"""Checks on a finished GP-29 label map: valid labels, per-class IoU against a reference parsing,
and labels cut back to the person mask.

Kept apart from :mod:`gpvton_core.conditions.parsing`, which derives the map: these apply to any
parsing (given, estimated or derived) and, for :func:`restrict_to_mask`, to a DensePose index too.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from gpvton_core.conditions.labels import NUM_LABELS, Label
from gpvton_core.conditions.parsing import ParsingError

# Classes scored against GP-VTON's own parsing (garment, arm and neck classes).
SCORED_CLASSES = (Label.UPPER, Label.DRESSES, Label.COAT, Label.LEFT_PANTS, Label.RIGHT_PANTS, Label.NECK,
                  Label.SKIRTS, Label.LEFT_ARM, Label.RIGHT_ARM, Label.LEFT_SLEEVE_UPPER, Label.RIGHT_SLEEVE_UPPER,
                  Label.LEFT_SLEEVE_DRESSES, Label.RIGHT_SLEEVE_DRESSES, Label.LEFT_SLEEVE_COAT,
                  Label.RIGHT_SLEEVE_COAT)


def validate(gp: np.ndarray) -> None:
    """Raise :class:`ParsingError` unless ``gp`` is an H×W map of GP-29 labels."""
    a = np.asarray(gp)
    if a.ndim != 2:
        raise ParsingError(f"parsing must be H×W, got {a.shape}")
    if a.size and int(a.max()) >= NUM_LABELS:
        raise ParsingError(f"parsing has labels ≥ {NUM_LABELS}: {sorted(set(np.unique(a)) - set(range(NUM_LABELS)))}")


def class_iou(pred: np.ndarray, ref: np.ndarray, classes: Iterable[int] = SCORED_CLASSES) -> dict[int, float]:
    """Per-class IoU over the classes present in pred or ref (absent from both → skipped)."""
    p, r = np.asarray(pred), np.asarray(ref)
    if p.shape != r.shape:
        raise ValueError(f"shape mismatch {p.shape} vs {r.shape}")
    out = {}
    for c in classes:
        a, b = p == c, r == c
        union = np.logical_or(a, b).sum()
        if union:
            out[int(c)] = float(np.logical_and(a, b).sum() / union)
    return out


def mean_iou(ious: dict[int, float]) -> float:
    """Mean of the per-class IoUs (NaN when no class was scored)."""
    return float(np.mean(list(ious.values()))) if ious else float("nan")


def restrict_to_mask(labels: np.ndarray, person: np.ndarray) -> tuple[np.ndarray, float]:
    """``labels`` (parsing or DensePose index, 0 = background) with everything outside the
    ``person`` mask set to 0, and the fraction of labelled pixels that was cut.

    An estimator that meets a busy background (leaves, logos) labels parts of it as clothes or
    body; the person mask of preprocessing knows better where the person is."""
    lab = np.asarray(labels)
    keep = np.asarray(person, bool)
    if keep.shape != lab.shape:
        raise ValueError(f"person mask {keep.shape} and labels {lab.shape} sizes differ")
    labelled = lab > 0
    n = int(labelled.sum())
    cut = labelled & ~keep
    out = lab.copy()
    out[cut] = 0
    return out, (float(cut.sum()) / n if n else 0.0)
