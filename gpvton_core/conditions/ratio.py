"""DGT person–garment ratio ``pc_ratio`` (spec §9.1), for paired persons.

The official ratio files are not reproducible (how r is computed is unpublished, issue #33); the
spec only fixes its meaning: **small r = the garment is tucked in** (shorter on the body than it
would be worn loose), with thresholds around 0.9–1.0. We define

    r = (h_person / w_person) / (h_garment / w_garment) / C

* ``h_person``: vertical extent of the worn garment's torso region on the person (GP labels 5
  upper / 6 dresses; 2nd–98th percentile of its rows, so stray pixels do not count);
* ``w_person``: the person's shoulder width, |LShoulder − RShoulder| (BODY_25 5, 2) — a body
  measure that does not depend on how the garment is worn;
* ``h_garment``: vertical extent of the flat garment's middle (torso) part (same percentiles);
* ``w_garment``: the flat garment's torso width, the median width of the middle part over its
  lower half;
* ``C``: a calibration constant, 1.0 by default. Without the official ratio files there is nothing
  to calibrate against; on the seven VITON-HD samples r spans 0.67–1.06 (the lower values are
  the tops worn tucked or cropped by the waistband), so the official thresholds 0.90/0.95 split
  them plausibly.

Why: both heights are lengths along the body, and each is normalised by a width of the same
object (the photo scale and the garment's size cancel), so what remains is how much of the
garment's length is visible on the body. A tucked-in garment loses length below the waistband →
r < 1; a loose one hangs its full length → r ≈ 1 or above. Returns ``None`` when a term is
missing (no shoulders, empty torso region, empty garment middle).
"""

from __future__ import annotations

import numpy as np

from gpvton_core.conditions.labels import PART_MIDDLE, Joint, Label

CALIBRATION = 1.0


def _extent(mask: np.ndarray) -> float:
    ys = np.nonzero(mask)[0]
    if ys.size < 10:
        return 0.0
    lo, hi = np.percentile(ys, [2, 98])
    return float(hi - lo + 1)


def garment_torso_width(parts: np.ndarray) -> float:
    mid = np.asarray(parts) == 2
    ys = np.nonzero(mid.any(axis=1))[0]
    if ys.size == 0:
        return 0.0
    rows = ys[len(ys) // 2:]
    widths = []
    for y in rows:
        xs = np.nonzero(mid[y])[0]
        widths.append(xs.max() - xs.min() + 1)
    return float(np.median(widths))


def pc_ratio(person_parsing: np.ndarray, keypoints: np.ndarray, garment_parts: np.ndarray,
             category: str = "upper", calibration: float = CALIBRATION) -> float | None:
    """The DGT ratio r for a person wearing the given garment (None when not computable)."""
    if category == "lower":
        return None
    torso_label = Label.DRESSES if category == "dresses" else Label.UPPER
    k = np.asarray(keypoints, np.float32).reshape(-1, 3)
    rs, ls = Joint.R_SHOULDER, Joint.L_SHOULDER
    if k[rs, 2] <= 0 or k[ls, 2] <= 0:
        return None
    w_p = float(np.hypot(*(k[ls, :2] - k[rs, :2])))
    h_p = _extent(np.asarray(person_parsing) == torso_label)
    h_g = _extent(np.asarray(garment_parts) == PART_MIDDLE)
    w_g = garment_torso_width(garment_parts)
    if min(w_p, h_p, h_g, w_g) <= 0:
        return None
    return float((h_p / w_p) / (h_g / w_g) / calibration)
