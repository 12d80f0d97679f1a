"""A garment item → its garments row: product image on white, garment mask, part map.

The mask is given, or found on a white background, or (``frame``: a product shot of any size)
found on a plain background and the shot framed 3:4 around the garment; where the built-in rules
cannot separate the garment, the user's matting model does. The part map (left / middle / right,
the wearer's sides) is given or derived from the mask's shape for the category.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from PIL import Image

from gpvton_core.conditions import framing as fr
from gpvton_core.conditions import garment as gm
from gpvton_core.conditions import resize as rs
from gpvton_core.conditions.labels import CATEGORIES, GARMENT_PARTS
from pipelines.preprocess.image_decoding import DEFAULT_MAX_PIXELS, to_rgb
from pipelines.preprocess.item_context import ItemContext
from pipelines.preprocess.readers import normalize_category
from pipelines.preprocess.row_encoding import garment_row

ANALYSIS_SIDE = 768      # product shots are segmented at most this large to find the garment's box


def _estimated_mask(ctx: ItemContext, image: np.ndarray, est) -> np.ndarray:
    """Built-in plain-background mask, else the user's matting model, else an error row."""
    try:
        mask = gm.mask_from_plain_background(image)
        ctx.provenance["mask"] = "estimated:plain-background"
        return mask
    except gm.GarmentError as exc:
        matting = est.matting if est is not None else None
        if matting is None:
            raise ctx.fail("derive", str(exc)) from None
    mask = matting.mask(image)
    if mask.mean() < 0.002:
        raise ctx.fail("derive", f"cannot separate the garment from its background: the matting model "
                                 f"({matting.provenance}) found no garment")
    ctx.provenance["mask"] = f"estimated:{matting.provenance}"
    ctx.models["matting"] = matting.provenance
    return mask


def _given_mask(ctx: ItemContext, rgb: Image.Image, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The working-size image and the item's own mask, binarised."""
    url = ctx.item["mask"]
    image = rs.resize_rgb(rgb, hw, mode="pad")
    mim = ctx.image(url, "mask")
    ctx.check_size((mim.height, mim.width), (rgb.height, rgb.width), "mask", url)
    m8 = np.asarray(mim.convert("L"))
    if m8.shape != hw:
        m8 = rs.resize_labels(m8, hw, mode="pad")
    mask = gm.binarize_mask(m8)
    if not mask.any():
        raise ctx.fail("validate", "given garment mask is empty", url)
    ctx.provenance["mask"] = "given"
    return image, mask


def _framed_product_shot(ctx: ItemContext, rgb: Image.Image, hw: tuple[int, int], est
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Find the garment on a small copy, frame it 3:4 on white, segment it again in the frame."""
    image_hw = (rgb.height, rgb.width)
    s = min(1.0, ANALYSIS_SIDE / max(image_hw))
    small = np.asarray(rgb.resize((max(1, round(rgb.width * s)), max(1, round(rgb.height * s))),
                                  Image.BILINEAR)) if s < 1.0 else np.asarray(rgb)
    bbox = fr.mask_bbox(_estimated_mask(ctx, small, est))
    bbox = tuple(v / s for v in bbox)
    box = fr.frame_box(bbox, image_hw, margin=est.cfg.framing.garment_margin if est else fr.GARMENT_MARGIN)
    image = rs.resize_rgb(fr.crop_rgb(rgb, box, fill=(255, 255, 255)), hw, mode="pad")
    mask = _estimated_mask(ctx, image, est)
    image = np.where(mask[..., None], image, np.uint8(255))     # centred on white
    ctx.provenance["frame"] = {"box": box.as_list(), "photo_hw": list(image_hw)}
    return image, mask


def _white_background(ctx: ItemContext, rgb: Image.Image, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The working-size image and the mask of what is not its white background."""
    image = rs.resize_rgb(rgb, hw, mode="pad")
    try:
        mask = gm.mask_from_white_background(image)
    except gm.GarmentError as exc:
        raise ctx.fail("derive", str(exc)) from None
    ctx.provenance["mask"] = "derived:white-background"
    return image, mask


def _parts(ctx: ItemContext, mask: np.ndarray, category: str, image_hw: tuple[int, int],
           hw: tuple[int, int]) -> np.ndarray:
    """The part map: the item's own (inside the mask), else derived from the mask's shape."""
    url = ctx.item.get("parts")
    if url:
        parts = ctx.labels(url, "parts", image_hw, hw, mode="pad")
        if parts.max() > max(GARMENT_PARTS):
            raise ctx.fail("validate", f"parts map values must be 0..3, got max {int(parts.max())}", url)
        parts = np.where(mask, parts, 0).astype(np.uint8)
        ctx.provenance["parts"] = "given"
        return parts
    try:
        parts = gm.garment_parts(mask, category)
    except gm.GarmentError as exc:
        raise ctx.fail("derive", str(exc)) from None
    ctx.provenance["parts"] = "derived:shape-v1"
    return parts


def derive_garment_arrays(item: dict, read: Callable[[str], bytes], resolution: int,
                          max_pixels: int = DEFAULT_MAX_PIXELS, est=None) -> dict[str, Any]:
    """The garment's working-size ``image``, ``mask``, ``parts``, ``category`` and its ``ctx``."""
    ctx = ItemContext(item, read, max_pixels)
    hw = rs.working_size(resolution)
    cat = normalize_category(item.get("category"))
    if cat is None:
        raise ctx.fail("validate", f"unknown category {item.get('category')!r}; use {list(CATEGORIES)}")
    im = ctx.image(item["image"], "image")
    rgb, note = to_rgb(im)
    if note:
        ctx.provenance["image_converted"] = note
    if item.get("mask"):
        image, mask = _given_mask(ctx, rgb, hw)
    elif item.get("frame"):
        image, mask = _framed_product_shot(ctx, rgb, hw, est)
    else:
        image, mask = _white_background(ctx, rgb, hw)
    parts = _parts(ctx, mask, cat, (rgb.height, rgb.width), hw)
    return {"image": image, "mask": mask, "parts": parts, "category": cat, "provenance": ctx.provenance,
            "ctx": ctx}


def derive_garment(item: dict, read: Callable[[str], bytes], resolution: int,
                   max_pixels: int = DEFAULT_MAX_PIXELS, est=None) -> dict[str, Any]:
    g = derive_garment_arrays(item, read, resolution, max_pixels, est)
    return garment_row(item, category=g["category"], image=g["image"], mask=g["mask"], parts=g["parts"],
                       provenance=g["ctx"].provenance_json())
