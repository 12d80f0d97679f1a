"""Where the person is in a photo, and the working frame cut around them.

Keypoints are given (OpenPose BODY_25 or COCO-18 files) or estimated (the pose estimator, plus the
person segmenter's mask when configured). A bare photo is framed on its subject so the model sees
a person of the size it was trained on; a photo with image-aligned annotations (parsing,
DensePose) is kept whole, since cropping would move them off their pixels. The frame decides which
garment categories the photo can take: a category needs its joints in the frame.
"""

from __future__ import annotations

import json

import numpy as np
from PIL import Image, ImageFilter

from gpvton_core.conditions import framing as fr
from gpvton_core.conditions import pose as po
from gpvton_core.conditions import resize as rs
from gpvton_core.conditions.labels import BODY_25, Joint
from pipelines.preprocess.item_context import ItemContext

IMAGE_ALIGNED = ("parsing", "lip_parsing", "atr_parsing", "densepose", "densepose_rendered")
# Joints a garment category needs in the frame (BODY_25 indices): a photo cut off above them
# cannot take that category.
REQUIRED_JOINTS: dict[str, tuple[int, ...]] = {
    "upper": (Joint.NECK, Joint.R_SHOULDER, Joint.L_SHOULDER, Joint.R_HIP, Joint.L_HIP),
    "lower": (Joint.R_HIP, Joint.L_HIP, Joint.R_KNEE, Joint.L_KNEE),
    "dresses": (Joint.NECK, Joint.R_SHOULDER, Joint.L_SHOULDER, Joint.R_HIP, Joint.L_HIP, Joint.R_KNEE, Joint.L_KNEE),
}   # a dress reaches past the thighs: its length needs the knees in the frame

# An estimator also guesses joints it cannot see (a knee just below the frame): for the category
# decision an estimated joint counts only when the estimator is fairly sure of it.
ESTIMATED_JOINT_MIN_CONF = 0.5
# The segmenter's person mask counts only within this fraction of the subject's box size around
# it, so another person's segmentation does not widen this one's extent.
SUBJECT_BOX_GROW = 0.35


def given_keypoints(ctx: ItemContext, image_hw: tuple[int, int]) -> np.ndarray:
    """BODY_25 keypoints (photo pixels) from the item's keypoint file, OpenPose or COCO-18."""
    item = ctx.item
    url = item["keypoints"]
    raw = ctx.read(url, "keypoints")
    try:
        data = json.loads(raw.decode("utf-8"))
    except Exception as exc:  # noqa: BLE001
        raise ctx.fail("decode", f"keypoints: invalid JSON ({exc})", url) from None
    try:
        coco = item.get("keypoints_format") == "coco18" or (
            isinstance(data, dict) and "keypoints" in data and "people" not in data)
        if coco:   # Dress Code style {"keypoints": [[x, y, score, index] × 18]}
            pts = data.get("keypoints") if isinstance(data, dict) else data
            if not pts:
                raise po.NoPersonError("keypoint file has no keypoints")
            k = po.coco18_to_body25(pts)
            ctx.provenance["keypoints"] = "given:coco18→body25"
        else:
            k = po.body25_from_openpose(data)
            ctx.provenance["keypoints"] = "given:openpose-body25"
    except (po.NoPersonError, ValueError) as exc:
        raise ctx.fail("derive", f"keypoints: {exc}", url) from None
    ref = item.get("keypoints_ref_hw")
    if ref:
        k = po.scale_keypoints(k, tuple(ref), image_hw)
    return k


def estimate_pose(ctx: ItemContext, photo: np.ndarray, est
                  ) -> tuple[np.ndarray, tuple[float, float, float, float], np.ndarray | None]:
    """BODY_25 keypoints, the subject's box (photo pixels) and the person mask (photo pixels,
    None without a segmenter) of the one person in ``photo``."""
    pose = est.pose if est is not None else None
    if pose is None:
        raise ctx.fail("validate", "no keypoints given and pose estimation is off (pose.backend: none); "
                                   "give keypoints or use the bundled estimator (pose.backend: mediapipe)")
    people = pose.estimate(photo)
    if not people:
        raise ctx.fail("derive", "no person found in the photo")
    first = people[0]
    tall = [p for p in people[1:] if (p.bbox[3] - p.bbox[1]) >= est.cfg.framing.second_person_min_size
            * (first.bbox[3] - first.bbox[1])]
    if tall:
        raise ctx.fail("validate", f"{1 + len(tall)} persons in the photo; a model photo must show one "
                                   "person (crop it to one model)")
    ctx.provenance["keypoints"] = f"estimated:{pose.provenance}"
    ctx.models["pose"] = pose.provenance
    subject = tuple(float(v) for v in first.bbox)
    seg = est.segmenter
    mine = None
    if seg is not None:
        person = seg.mask(photo) >= 0.5
        ctx.models["segmenter"] = seg.provenance
        kb = fr.keypoints_bbox(first.keypoints)
        mine = person & _near_box(person.shape, kb or subject, SUBJECT_BOX_GROW)
        mb = fr.mask_bbox(mine)
        if mb is not None:
            subject = (min(subject[0], mb[0]), min(subject[1], mb[1]), max(subject[2], mb[2]), max(subject[3], mb[3]))
        else:
            mine = None
    return first.keypoints, subject, mine


def _near_box(shape: tuple[int, int], box, grow: float) -> np.ndarray:
    """Bool mask of ``box`` grown by ``grow`` × its size on every side (keeps another person's
    segmentation out of this one's extent)."""
    H, W = shape
    x0, y0, x1, y1 = box
    gx, gy = grow * (x1 - x0), grow * (y1 - y0)
    m = np.zeros((H, W), bool)
    m[max(0, int(y0 - gy)):min(H, int(y1 + gy) + 1), max(0, int(x0 - gx)):min(W, int(x1 + gx) + 1)] = True
    return m


def frame_photo(ctx: ItemContext, rgb: Image.Image, kps_photo: np.ndarray,
                subject: tuple[float, float, float, float] | None, est, resolution: int
                ) -> tuple[np.ndarray, np.ndarray, fr.CropBox]:
    """The working-size image, its keypoints and the frame (photo pixels) it was cut from.

    With an estimated ``subject`` box the person must be tall enough to render, and a bare photo
    is framed on them; otherwise the photo is kept whole and only the fit's centre crop frames it.
    """
    H, W = rs.working_size(resolution)
    image_hw = (rgb.height, rgb.width)
    box = fr.whole(image_hw)
    if subject is not None:
        fcfg = est.cfg.framing
        if subject[3] - subject[1] < fcfg.min_person_height * H:
            raise ctx.fail("validate", f"the person is too small to render: {subject[3] - subject[1]:.0f} px tall, "
                                       f"needs ≥ {fcfg.min_person_height * H:.0f} px at resolution {resolution}")
        aligned = any(ctx.item.get(k) for k in IMAGE_ALIGNED)
        if ctx.item.get("frame", True) and not aligned:
            box = fr.frame_person(subject, image_hw, margin=fcfg.person_margin,
                                  framed_fraction=fcfg.framed_fraction)
    framed = rgb if box.is_whole(image_hw) else Image.fromarray(fr.crop_rgb(rgb, box, fill="edge"))
    if not box.is_whole(image_hw):
        ctx.provenance["frame"] = {"box": box.as_list(), "photo_hw": list(image_hw)}
    fit = rs.compute_fit((framed.height, framed.width), (H, W), "crop")
    image = rs.resize_rgb(framed, (H, W), mode="crop")
    kps = rs.transform_keypoints(fr.box_keypoints(kps_photo, box), fit)
    if box.is_whole(image_hw):
        # A photo kept whole but not 3:4 (given keypoints or aligned annotations) is centre-cropped
        # by the fit: that crop is its frame, or render's `frame: original` would stretch the try-on.
        cx0, cy0 = round(-fit.offset_x / fit.scale), round(-fit.offset_y / fit.scale)
        crop = fr.CropBox(cx0, cy0, cx0 + round(W / fit.scale), cy0 + round(H / fit.scale))
        if not crop.is_whole(image_hw):
            box = crop
    return image, kps, box


def person_mask_in_frame(person_photo: np.ndarray, box: fr.CropBox, hw: tuple[int, int]) -> np.ndarray:
    """The segmenter's person mask (photo pixels) in the working frame, grown a little (hair, edges)."""
    H, _ = hw
    m = rs.resize_labels(fr.crop_labels(person_photo.astype(np.uint8), box, fill=0), hw, mode="crop")
    grow = 2 * max(1, round(H / 128)) + 1
    return np.asarray(Image.fromarray(m * 255).filter(ImageFilter.MaxFilter(grow))) > 0


def usable_categories(ctx: ItemContext, kps: np.ndarray, cats: list[str]) -> list[str]:
    """The categories whose joints are in the frame; an error when a declared one (or every one) is not."""
    floor = ESTIMATED_JOINT_MIN_CONF if str(ctx.provenance.get("keypoints", "")).startswith("estimated") else 0.0
    missing = {c: [BODY_25[j] for j in REQUIRED_JOINTS[c] if kps[j, 2] <= floor] for c in cats}
    ok = [c for c in cats if not missing[c]]
    declared = ctx.item.get("categories_declared", True)
    bad = {c: m for c, m in missing.items() if m}
    if bad and (declared or not ok):
        what = "; ".join(f"{c} needs {', '.join(m)}" for c, m in bad.items())
        raise ctx.fail("validate", f"the person is cut off: joints missing from the photo ({what})")
    if bad:
        ctx.provenance["categories_dropped"] = {c: m for c, m in bad.items()}
    return ok
