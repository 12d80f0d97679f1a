"""A person item → its persons row: photo, GP-29 parsing, DensePose index, keypoints, pc ratio.

Three phases so that the human parser sees a whole batch at once (:mod:`.derive`): prepare
(decode, keypoints, framing, given parsing), parse (one parser batch for the drafts without a
parsing), finish (DensePose, skin check, worn-garment ratio, the row). Each annotation is taken
as given when the item has it, derived from what it has (LIP/ATR parsing + pose, a DensePose
colour rendering), else estimated, and the provenance records which.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from gpvton_core.conditions import densepose as dp
from gpvton_core.conditions import densepose_approximation as dpa
from gpvton_core.conditions import framing as fr
from gpvton_core.conditions import masks as mk
from gpvton_core.conditions import parsing as ps
from gpvton_core.conditions import parsing_checks
from gpvton_core.conditions import ratio as rt
from gpvton_core.conditions import resize as rs
from gpvton_core.conditions.labels import CATEGORIES
from pipelines.preprocess.garment_derivation import derive_garment_arrays
from pipelines.preprocess.image_decoding import DEFAULT_MAX_PIXELS, to_rgb
from pipelines.preprocess.item_context import ItemContext, ItemError
from pipelines.preprocess.person_framing import (estimate_pose, frame_photo, given_keypoints, person_mask_in_frame,
                                                 usable_categories)
from pipelines.preprocess.row_encoding import person_row


@dataclass
class PersonDraft:
    """A person after decoding, pose and framing, waiting for (batched) parsing."""

    ctx: ItemContext
    image: np.ndarray               # working size RGB
    kps: np.ndarray                 # BODY_25, working-size pixels
    categories: list[str]
    image_hw: tuple[int, int]       # decoded photo
    box: fr.CropBox                 # the working frame in the photo's pixels
    gp: np.ndarray | None           # 29-label parsing when given or derived from given label maps
    person: np.ndarray | None = None  # the segmenter's person mask (working size), when pose was estimated

    @property
    def needs_parser(self) -> bool:
        return self.gp is None


def prepare_person(item: dict, read: Callable[[str], bytes], resolution: int,
                   max_pixels: int = DEFAULT_MAX_PIXELS, est=None) -> PersonDraft:
    ctx = ItemContext(item, read, max_pixels)
    H, W = rs.working_size(resolution)
    cats = [c for c in (item.get("categories") or [])]
    bad = [c for c in cats if c not in CATEGORIES]
    if bad or not cats:
        raise ctx.fail("validate", f"unknown categories {bad or cats}; use {list(CATEGORIES)}")
    im = ctx.image(item["image"], "image")
    rgb, note = to_rgb(im)
    if note:
        ctx.provenance["image_converted"] = note
    image_hw = (rgb.height, rgb.width)
    person_photo = None
    if item.get("keypoints"):
        kps_photo, subject = given_keypoints(ctx, image_hw), None
    else:
        kps_photo, subject, person_photo = estimate_pose(ctx, np.asarray(rgb), est)
    image, kps, box = frame_photo(ctx, rgb, kps_photo, subject, est, resolution)
    cats = usable_categories(ctx, kps, cats)
    gp = _given_parsing(ctx, kps, image_hw, (H, W), est)
    person = None if person_photo is None else person_mask_in_frame(person_photo, box, (H, W))
    return PersonDraft(ctx, image, kps, cats, image_hw, box, gp, person)


def _given_parsing(ctx: ItemContext, kps: np.ndarray, image_hw: tuple[int, int], hw: tuple[int, int],
                   est) -> np.ndarray | None:
    """The GP-29 parsing from the item's own label maps; None when the parser must estimate it."""
    item = ctx.item
    if item.get("parsing"):
        gp = ctx.labels(item["parsing"], "parsing", image_hw, hw)
        ctx.provenance["parsing"] = "given:gpvton-29"
        return gp
    if item.get("lip_parsing"):
        gp = _from_scheme(ctx, ctx.labels(item["lip_parsing"], "LIP parsing", image_hw, hw), "lip", kps,
                          item["lip_parsing"])
        ctx.provenance["parsing"] = "derived:lip+pose"
        return gp
    if item.get("atr_parsing"):
        gp = _from_scheme(ctx, ctx.labels(item["atr_parsing"], "ATR parsing", image_hw, hw), "atr", kps,
                          item["atr_parsing"])
        ctx.provenance["parsing"] = "derived:atr+pose"
        return gp
    if est is None or est.parser is None:
        from pipelines.preprocess.estimators.bundle import NO_PARSER

        raise ctx.fail("validate", NO_PARSER)
    return None


def _from_scheme(ctx: ItemContext, labels: np.ndarray, scheme: str, kps: np.ndarray, url: str | None) -> np.ndarray:
    try:
        if scheme == "lip":
            return ps.from_lip(labels, kps)
        if scheme == "atr":
            return ps.from_atr(labels, kps)
        return labels
    except ps.ParsingError as exc:
        raise ctx.fail("derive", str(exc), url) from None


def parse_drafts(drafts: list[PersonDraft], est) -> None:
    """Estimate the parsing of every draft that lacks one, in one parser batch."""
    todo = [d for d in drafts if d.needs_parser]
    if not todo:
        return
    parser = est.parser
    labels = parser.parse_batch([d.image for d in todo])
    for d, lab in zip(todo, labels):
        d.gp = _from_scheme(d.ctx, lab, parser.scheme, d.kps, None)
        d.ctx.provenance["parsing"] = f"estimated:{parser.provenance}" + (
            f"+derived:{parser.scheme}+pose" if parser.scheme in ("lip", "atr") else "")
        d.ctx.models["parser"] = parser.provenance
        if d.person is not None:   # a parser's labels on a busy background are not the person's
            d.gp, cut = parsing_checks.restrict_to_mask(d.gp, d.person)
            d.ctx.provenance.setdefault("outside_person_mask", {})["parsing"] = round(cut, 4)


def _densepose(d: PersonDraft, est) -> np.ndarray:
    """The DensePose part index: given, inverted from a colour rendering, the model's, or approximated."""
    ctx, item, H, W = d.ctx, d.ctx.item, d.image.shape[0], d.image.shape[1]
    if item.get("densepose"):
        dpi = ctx.labels(item["densepose"], "densepose", d.image_hw, (H, W))
        if dpi.max() >= dp.NUM_PARTS:
            raise ctx.fail("validate", f"densepose index {int(dpi.max())} > 24", item["densepose"])
        ctx.provenance["densepose"] = "given:index"
        return dpi
    if item.get("densepose_rendered"):
        rim = ctx.image(item["densepose_rendered"], "densepose rendering")
        ctx.check_size((rim.height, rim.width), d.image_hw, "densepose rendering", item["densepose_rendered"])
        rrgb = np.asarray(rim.convert("RGB"))
        if rrgb.shape[:2] != (H, W):
            rrgb = rs.resize_rgb(rrgb, (H, W), mode="crop")   # bicubic, then nearest colour
        dpi = dp.index_from_rendering(rrgb, keypoints=d.kps)
        ctx.provenance["densepose"] = "derived:colour-rendering"
    elif est is not None and est.densepose is not None:
        model = est.densepose
        dpi = model.predict(d.image)
        ctx.provenance["densepose"] = f"estimated:model:{model.provenance}"
        ctx.models["densepose"] = model.provenance
    else:
        try:
            dpi = dpa.approximate_from_mask(d.gp > 0, d.kps, parsing=d.gp)
        except ValueError as exc:
            raise ctx.fail("derive", f"DensePose approximation: {exc}") from None
        ctx.provenance["densepose"] = "estimated:mask+skeleton"
    if d.person is not None and not item.get("densepose_rendered"):
        dpi, cut = parsing_checks.restrict_to_mask(dpi, d.person)   # estimated DensePose stays on the person too
        ctx.provenance.setdefault("outside_person_mask", {})["densepose"] = round(cut, 4)
    return dpi


def _worn_pc_ratio(ctx: ItemContext, gp: np.ndarray, kps: np.ndarray, read: Callable[[str], bytes],
                   resolution: int, max_pixels: int) -> float | None:
    """The person-to-garment ratio of the garment the person wears, when the item names it."""
    item = ctx.item
    wg = item.get("worn_garment")
    if not wg:
        return None
    try:
        g = derive_garment_arrays({"kind": "garment", "id": item.get("worn_garment_id") or "?",
                                   "image": wg["image"], "mask": wg.get("mask"), "parts": None,
                                   "category": wg.get("category")}, read, resolution, max_pixels)
        pc = rt.pc_ratio(gp, kps, g["parts"], g["category"])
        ctx.provenance["pc_ratio"] = "derived:v1" if pc is not None else "not computable"
        return pc
    except ItemError as exc:
        ctx.provenance["pc_ratio"] = f"worn garment failed: {exc.reason}"
        return None


def finish_person(d: PersonDraft, read: Callable[[str], bytes], resolution: int,
                  max_pixels: int = DEFAULT_MAX_PIXELS, est=None) -> dict[str, Any]:
    ctx, item, gp, image = d.ctx, d.ctx.item, d.gp, d.image
    try:
        parsing_checks.validate(gp)
    except ps.ParsingError as exc:
        raise ctx.fail("validate", str(exc), item.get("parsing")) from None
    dpi = _densepose(d, est)
    # Whether the generator's skin colour (§8.8) is defined for this photo, per model variant;
    # render decides what to do with a photo without visible skin.
    ctx.provenance["skin_colour_defined"] = {
        v: mk.skin_colour_ok(mk.skin_colour(image, gp, v)) for v in ("vitonhd", "dresscode")}
    pc = _worn_pc_ratio(ctx, gp, d.kps, read, resolution, max_pixels)
    return person_row(item, categories=d.categories, image=image, parsing=gp, densepose=dpi, keypoints=d.kps,
                      pc_ratio=pc, frame_box=None if d.box.is_whole(d.image_hw) else d.box.as_list(),
                      photo_hw=d.image_hw, provenance=ctx.provenance_json())


def derive_person(item: dict, read: Callable[[str], bytes], resolution: int,
                  max_pixels: int = DEFAULT_MAX_PIXELS, est=None) -> dict[str, Any]:
    draft = prepare_person(item, read, resolution, max_pixels, est)
    parse_drafts([draft], est)
    return finish_person(draft, read, resolution, max_pixels, est)
