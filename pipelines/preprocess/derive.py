"""Per-item derivation: read → decode → validate → derive → encode one shard row.

Bad input raises :class:`ItemError` (item id, kind, stage, reason, source URI); the pipeline turns
it into exactly one error row. Image modes are converted, not rejected, where the meaning is
clear: CMYK → RGB, RGBA/LA/P-with-transparency → composited on white, 16-bit/32-bit grey →
8-bit (scaled by the actual bit depth), 1-bit/L/P → RGB. Images larger than ``max_pixels`` are
rejected before decoding (decompression-bomb guard).
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from gpvton_core.conditions import DERIVATION_VERSION
from gpvton_core.conditions import densepose as dp
from gpvton_core.conditions import framing as fr
from gpvton_core.conditions import garment as gm
from gpvton_core.conditions import masks as mk
from gpvton_core.conditions import parsing as ps
from gpvton_core.conditions import pose as po
from gpvton_core.conditions import ratio as rt
from gpvton_core.conditions import resize as rs
from gpvton_core.conditions.labels import BODY_25, CATEGORIES, Joint
from infra.storage import sanitize_id

DEFAULT_MAX_PIXELS = 64_000_000


class ItemError(Exception):
    """One input item cannot be processed."""

    def __init__(self, item_id: str, kind: str, stage: str, reason: str, source_uri: str | None = None):
        super().__init__(f"{kind} {item_id!r} [{stage}]: {reason}")
        self.item_id, self.kind, self.stage, self.reason, self.source_uri = item_id, kind, stage, reason, source_uri

    def row(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "kind": self.kind, "stage": self.stage,
                "reason": self.reason, "source_uri": self.source_uri}


def check_id(item_id: str) -> str | None:
    """Why ``item_id`` is unsafe as an output key component, or None when it is fine."""
    if not item_id or not item_id.strip():
        return "empty id"
    if item_id != item_id.strip():
        return "id has leading/trailing whitespace"
    if sanitize_id(item_id) != item_id:
        return (f"id {item_id!r} is not storage-safe (path separators, '..', or characters outside "
                "A-Za-z0-9._-); it would escape or collide under the output prefix")
    return None


# --- decoding -----------------------------------------------------------------------------------
def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Decode image bytes; refuse images above ``max_pixels`` before decoding their pixels."""
    if len(data) == 0:
        raise ValueError("empty file (0 bytes)")

    def too_large(w: int, h: int) -> ValueError:
        return ValueError(f"image too large: {w}x{h} = {w * h} pixels exceeds the limit of "
                          f"{max_pixels} (decompression-bomb guard)")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)   # we apply our own limit
        try:
            im = Image.open(io.BytesIO(data))       # reads the header only
        except Image.DecompressionBombError as exc:  # Pillow's own hard limit (2× its default)
            raise ValueError(f"image too large ({exc}) (decompression-bomb guard)") from None
    w, h = im.size
    if w * h > max_pixels:
        raise too_large(w, h)
    im.load()
    return ImageOps.exif_transpose(im)     # camera photos: honour the EXIF orientation


def to_rgb(im: Image.Image) -> tuple[Image.Image, str | None]:
    """Convert any mode to RGB; returns the image and a note on what was converted."""
    mode = im.mode
    if mode == "RGB":
        return im, None
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im)
        a = a.astype(np.float64)
        top = 65535.0 if mode.startswith("I;16") or a.max() > 255 else 255.0
        a = np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB"), f"{mode}→RGB (scaled to 8 bit)"
    if mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if mode in ("RGBA", "LA", "PA") or im.mode == "RGBA":
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB"), f"{mode}→RGB (alpha composited on white)"
    return im.convert("RGB"), f"{mode}→RGB"


def to_labels(im: Image.Image, what: str) -> np.ndarray:
    """A label map image → uint8 H×W of the integer labels (P index, L value, or R of R=G=B)."""
    if im.mode in ("P", "L"):
        return np.asarray(im, dtype=np.uint8)
    if im.mode in ("RGB", "RGBA"):
        a = np.asarray(im.convert("RGB"))
        if not (np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 0], a[..., 2])):
            raise ValueError(f"{what}: an RGB label map must have R=G=B")
        return a[..., 0].copy()
    if im.mode in ("I;16", "I", "I;16B", "I;16L"):
        a = np.asarray(im)
        if a.max() > 255:
            raise ValueError(f"{what}: label values above 255")
        return a.astype(np.uint8)
    raise ValueError(f"{what}: unsupported label-map mode {im.mode}")


def png_bytes(a: np.ndarray, mode: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a), mode=mode).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


class ItemContext:
    """Per-item context: reader + error wrapping + provenance."""

    def __init__(self, item: dict, read: Callable[[str], bytes], max_pixels: int):
        self.item, self._read, self.max_pixels = item, read, max_pixels
        self.id, self.kind = item["id"], item["kind"]
        self.provenance: dict[str, Any] = {"derivation_version": DERIVATION_VERSION}
        self.models: dict[str, str] = {}     # estimator → "name@sha256[:12]" of its model file

    def provenance_json(self) -> str:
        """Provenance with a summary of which annotations were given, derived or estimated."""
        out = dict(self.provenance)
        for how in ("given", "derived", "estimated"):
            out[how] = sorted(k for k, v in self.provenance.items() if isinstance(v, str) and v.startswith(how + ":"))
        if self.models:
            out["models"] = dict(sorted(self.models.items()))
        return json.dumps(out, sort_keys=True)

    def fail(self, stage: str, reason: str, uri: str | None = None) -> ItemError:
        return ItemError(self.id, self.kind, stage, reason, uri or self.item.get("source_uri"))

    def read(self, url: str, what: str) -> bytes:
        try:
            return self._read(url)
        except FileNotFoundError:
            raise self.fail("read", f"{what} not found: {url}", url) from None
        except Exception as exc:  # noqa: BLE001
            raise self.fail("read", f"{what} unreadable: {type(exc).__name__}: {exc}", url) from None

    def image(self, url: str, what: str) -> Image.Image:
        data = self.read(url, what)
        try:
            return _open(data, self.max_pixels)
        except Exception as exc:  # noqa: BLE001 - PIL raises many types for corrupt files
            raise self.fail("decode", f"{what}: cannot decode image ({type(exc).__name__}: {exc})", url) from None

    def check_size(self, hw: tuple[int, int], image_hw: tuple[int, int], what: str, url: str) -> None:
        """An annotation must be at the image size, or at a standard working size (512×384,
        1024×768) of the same aspect ratio as the image (releases ship 512 annotations for 1024
        photos); anything else is a mismatch."""
        if hw == image_hw:
            return
        if hw in rs.RESOLUTIONS.values() and hw[0] * image_hw[1] == hw[1] * image_hw[0]:
            return
        raise self.fail("validate", f"{what} is {hw[1]}x{hw[0]} but the image is "
                        f"{image_hw[1]}x{image_hw[0]}", url)

    def labels(self, url: str, what: str, image_hw: tuple[int, int], work_hw: tuple[int, int],
               mode: str = "crop") -> np.ndarray:
        """Label map at the working resolution (nearest), after the size check."""
        im = self.image(url, what)
        hw = (im.height, im.width)
        self.check_size(hw, image_hw, what, url)
        try:
            a = to_labels(im, what)
        except ValueError as exc:
            raise self.fail("decode", str(exc), url) from None
        if hw == work_hw:
            return a
        if hw != image_hw:
            self.provenance.setdefault("resampled", []).append(f"{what} {hw[1]}x{hw[0]}→{work_hw[1]}x{work_hw[0]}")
        return rs.resize_labels(a, work_hw, mode=mode)


# --- persons ------------------------------------------------------------------------------------
IMAGE_ALIGNED = ("parsing", "lip_parsing", "atr_parsing", "densepose", "densepose_rendered")
# Joints a garment category needs in the frame (BODY_25 indices): a photo cut off above them
# cannot take that category.
REQUIRED_JOINTS: dict[str, tuple[int, ...]] = {
    "upper": (Joint.NECK, Joint.R_SHOULDER, Joint.L_SHOULDER, Joint.R_HIP, Joint.L_HIP),
    "lower": (Joint.R_HIP, Joint.L_HIP, Joint.R_KNEE, Joint.L_KNEE),
    "dresses": (Joint.NECK, Joint.R_SHOULDER, Joint.L_SHOULDER, Joint.R_HIP, Joint.L_HIP, Joint.R_KNEE, Joint.L_KNEE),
}   # a dress reaches past the thighs: its length needs the knees in the frame


ESTIMATED_JOINT_MIN_CONF = 0.5


def _keypoints(ctx: ItemContext, image_hw: tuple[int, int]) -> np.ndarray:
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


def _estimate_pose(ctx: ItemContext, photo: np.ndarray, est
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
        mine = person & _near_box(person.shape, kb or subject, 0.35)
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


def _usable_categories(ctx: ItemContext, kps: np.ndarray, cats: list[str]) -> list[str]:
    """The categories whose joints are in the frame; an error when a declared one (or every one) is not."""
    # An estimator also guesses joints it cannot see (a knee just below the frame): for the
    # category decision an estimated joint counts only when the estimator is fairly sure of it.
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
    aligned = any(item.get(k) for k in IMAGE_ALIGNED)
    person_photo = None
    if item.get("keypoints"):
        kps_photo, subject = _keypoints(ctx, image_hw), None
    else:
        kps_photo, subject, person_photo = _estimate_pose(ctx, np.asarray(rgb), est)
    box = fr.whole(image_hw)
    if subject is not None:
        fcfg = est.cfg.framing
        if subject[3] - subject[1] < fcfg.min_person_height * H:
            raise ctx.fail("validate", f"the person is too small to render: {subject[3] - subject[1]:.0f} px tall, "
                                       f"needs ≥ {fcfg.min_person_height * H:.0f} px at resolution {resolution}")
        if item.get("frame", True) and not aligned:
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
    cats = _usable_categories(ctx, kps, cats)

    gp = None
    if item.get("parsing"):
        gp = ctx.labels(item["parsing"], "parsing", image_hw, (H, W))
        ctx.provenance["parsing"] = "given:gpvton-29"
    elif item.get("lip_parsing"):
        gp = _from_scheme(ctx, ctx.labels(item["lip_parsing"], "LIP parsing", image_hw, (H, W)), "lip", kps,
                          item["lip_parsing"])
        ctx.provenance["parsing"] = "derived:lip+pose"
    elif item.get("atr_parsing"):
        gp = _from_scheme(ctx, ctx.labels(item["atr_parsing"], "ATR parsing", image_hw, (H, W)), "atr", kps,
                          item["atr_parsing"])
        ctx.provenance["parsing"] = "derived:atr+pose"
    elif est is None or est.parser is None:
        from pipelines.preprocess.estimators.bundle import NO_PARSER

        raise ctx.fail("validate", NO_PARSER)
    person = None
    if person_photo is not None:   # the person mask in the working frame, grown a little (hair, edges)
        m = rs.resize_labels(fr.crop_labels(person_photo.astype(np.uint8), box, fill=0), (H, W), mode="crop")
        grow = 2 * max(1, round(H / 128)) + 1
        person = np.asarray(Image.fromarray(m * 255).filter(ImageFilter.MaxFilter(grow))) > 0
    return PersonDraft(ctx, image, kps, cats, image_hw, box, gp, person)


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
            d.gp, cut = ps.restrict_to_mask(d.gp, d.person)
            d.ctx.provenance.setdefault("outside_person_mask", {})["parsing"] = round(cut, 4)


def finish_person(d: PersonDraft, read: Callable[[str], bytes], resolution: int,
                  max_pixels: int = DEFAULT_MAX_PIXELS, est=None) -> dict[str, Any]:
    ctx, item, gp, kps, image = d.ctx, d.ctx.item, d.gp, d.kps, d.image
    H, W = image.shape[:2]
    try:
        ps.validate(gp)
    except ps.ParsingError as exc:
        raise ctx.fail("validate", str(exc), item.get("parsing")) from None

    if item.get("densepose"):
        dpi = ctx.labels(item["densepose"], "densepose", d.image_hw, (H, W))
        if dpi.max() >= dp.NUM_PARTS:
            raise ctx.fail("validate", f"densepose index {int(dpi.max())} > 24", item["densepose"])
        ctx.provenance["densepose"] = "given:index"
    elif item.get("densepose_rendered"):
        rim = ctx.image(item["densepose_rendered"], "densepose rendering")
        ctx.check_size((rim.height, rim.width), d.image_hw, "densepose rendering", item["densepose_rendered"])
        rrgb = np.asarray(rim.convert("RGB"))
        if rrgb.shape[:2] != (H, W):
            rrgb = rs.resize_rgb(rrgb, (H, W), mode="crop")   # bicubic, then nearest colour
        dpi = dp.index_from_rendering(rrgb, keypoints=kps)
        ctx.provenance["densepose"] = "derived:colour-rendering"
    elif est is not None and est.densepose is not None:
        model = est.densepose
        dpi = model.predict(image)
        ctx.provenance["densepose"] = f"estimated:model:{model.provenance}"
        ctx.models["densepose"] = model.provenance
    else:
        try:
            dpi = dp.approximate_from_mask(gp > 0, kps, parsing=gp)
        except ValueError as exc:
            raise ctx.fail("derive", f"DensePose approximation: {exc}") from None
        ctx.provenance["densepose"] = "estimated:mask+skeleton"

    if d.person is not None and not item.get("densepose") and not item.get("densepose_rendered"):
        dpi, cut = ps.restrict_to_mask(dpi, d.person)   # estimated DensePose stays on the person too
        ctx.provenance.setdefault("outside_person_mask", {})["densepose"] = round(cut, 4)

    # Whether the generator's skin colour (§8.8) is defined for this photo, per model variant;
    # render decides what to do with a photo without visible skin.
    ctx.provenance["skin_colour_defined"] = {
        v: mk.skin_colour_ok(mk.skin_colour(image, gp, v)) for v in ("vitonhd", "dresscode")}

    pc = None
    wg = item.get("worn_garment")
    if wg:
        try:
            g = derive_garment_arrays({"kind": "garment", "id": item.get("worn_garment_id") or "?",
                                       "image": wg["image"], "mask": wg.get("mask"), "parts": None,
                                       "category": wg.get("category")}, read, resolution, max_pixels)
            cat = g["category"]
            pc = rt.pc_ratio(gp, kps, g["parts"], cat)
            ctx.provenance["pc_ratio"] = "derived:v1" if pc is not None else "not computable"
        except ItemError as exc:
            ctx.provenance["pc_ratio"] = f"worn garment failed: {exc.reason}"
    return {
        "person_id": item["id"], "categories": d.categories, "source": item.get("source", "manifest"),
        "source_uri": item.get("source_uri") or item["image"], "height": H, "width": W,
        "image_png": png_bytes(image, "RGB"), "parsing_png": png_bytes(gp.astype(np.uint8), "L"),
        "densepose_png": png_bytes(dpi.astype(np.uint8), "L"),
        "keypoints": kps.astype(np.float32).reshape(-1).tolist(),
        "worn_garment_id": item.get("worn_garment_id"), "pc_ratio": None if pc is None else float(pc),
        "frame_box": None if d.box.is_whole(d.image_hw) else d.box.as_list(),
        "photo_height": d.image_hw[0], "photo_width": d.image_hw[1],
        "provenance": ctx.provenance_json(),
    }


def derive_person(item: dict, read: Callable[[str], bytes], resolution: int,
                  max_pixels: int = DEFAULT_MAX_PIXELS, est=None) -> dict[str, Any]:
    draft = prepare_person(item, read, resolution, max_pixels, est)
    parse_drafts([draft], est)
    return finish_person(draft, read, resolution, max_pixels, est)


# --- garments -----------------------------------------------------------------------------------
ANALYSIS_SIDE = 768      # product shots are segmented at most this large to find the garment's box


def _garment_mask(ctx: ItemContext, image: np.ndarray, est) -> np.ndarray:
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


def derive_garment_arrays(item: dict, read: Callable[[str], bytes], resolution: int,
                          max_pixels: int = DEFAULT_MAX_PIXELS, est=None) -> dict[str, Any]:
    ctx = ItemContext(item, read, max_pixels)
    H, W = rs.working_size(resolution)
    cat = readers_normalize(item.get("category"))
    if cat is None:
        raise ctx.fail("validate", f"unknown category {item.get('category')!r}; use {list(CATEGORIES)}")
    im = ctx.image(item["image"], "image")
    rgb, note = to_rgb(im)
    if note:
        ctx.provenance["image_converted"] = note
    image_hw = (rgb.height, rgb.width)
    if item.get("mask"):
        image = rs.resize_rgb(rgb, (H, W), mode="pad")
        mim = ctx.image(item["mask"], "mask")
        ctx.check_size((mim.height, mim.width), image_hw, "mask", item["mask"])
        m8 = np.asarray(mim.convert("L"))
        if m8.shape != (H, W):
            m8 = rs.resize_labels(m8, (H, W), mode="pad")
        mask = gm.binarize_mask(m8)
        if not mask.any():
            raise ctx.fail("validate", "given garment mask is empty", item["mask"])
        ctx.provenance["mask"] = "given"
    elif item.get("frame"):
        # Product shot: find the garment on a small copy, frame it 3:4 on white, segment again there.
        s = min(1.0, ANALYSIS_SIDE / max(image_hw))
        small = np.asarray(rgb.resize((max(1, round(rgb.width * s)), max(1, round(rgb.height * s))),
                                      Image.BILINEAR)) if s < 1.0 else np.asarray(rgb)
        bbox = fr.mask_bbox(_garment_mask(ctx, small, est))
        bbox = tuple(v / s for v in bbox)
        box = fr.frame_box(bbox, image_hw, margin=est.cfg.framing.garment_margin if est else fr.GARMENT_MARGIN)
        image = rs.resize_rgb(fr.crop_rgb(rgb, box, fill=(255, 255, 255)), (H, W), mode="pad")
        mask = _garment_mask(ctx, image, est)
        image = np.where(mask[..., None], image, np.uint8(255))     # centred on white
        ctx.provenance["frame"] = {"box": box.as_list(), "photo_hw": list(image_hw)}
    else:
        image = rs.resize_rgb(rgb, (H, W), mode="pad")
        try:
            mask = gm.mask_from_white_background(image)
        except gm.GarmentError as exc:
            raise ctx.fail("derive", str(exc)) from None
        ctx.provenance["mask"] = "derived:white-background"
    if item.get("parts"):
        parts = ctx.labels(item["parts"], "parts", image_hw, (H, W), mode="pad")
        if parts.max() > 3:
            raise ctx.fail("validate", f"parts map values must be 0..3, got max {int(parts.max())}", item["parts"])
        parts = np.where(mask, parts, 0).astype(np.uint8)
        ctx.provenance["parts"] = "given"
    else:
        try:
            parts = gm.garment_parts(mask, cat)
        except gm.GarmentError as exc:
            raise ctx.fail("derive", str(exc)) from None
        ctx.provenance["parts"] = "derived:shape-v1"
    return {"image": image, "mask": mask, "parts": parts, "category": cat, "provenance": ctx.provenance,
            "ctx": ctx}


def readers_normalize(value: Any) -> str | None:
    from pipelines.preprocess.readers import normalize_category

    return normalize_category(value)


def derive_garment(item: dict, read: Callable[[str], bytes], resolution: int,
                   max_pixels: int = DEFAULT_MAX_PIXELS, est=None) -> dict[str, Any]:
    g = derive_garment_arrays(item, read, resolution, max_pixels, est)
    H, W = rs.working_size(resolution)
    return {
        "garment_id": item["id"], "category": g["category"], "source": item.get("source", "manifest"),
        "source_uri": item.get("source_uri") or item["image"], "height": H, "width": W,
        "image_png": png_bytes(g["image"], "RGB"),
        "mask_png": png_bytes((g["mask"] * 255).astype(np.uint8), "L"),
        "parts_png": png_bytes(g["parts"].astype(np.uint8), "L"),
        "provenance": g["ctx"].provenance_json(),
    }


def _guard(item: dict, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` for ``item``; any unexpected failure still becomes one :class:`ItemError`."""
    kind = item.get("kind", "?")
    try:
        return fn()
    except ItemError:
        raise
    except Exception as exc:  # noqa: BLE001 - an unexpected failure still becomes one error row
        raise ItemError(item.get("id", "?"), kind, "derive", f"{type(exc).__name__}: {exc}",
                        item.get("source_uri")) from exc


def _check_item(item: dict) -> None:
    kind = item.get("kind", "?")
    if item.get("error"):
        e = item["error"]
        raise ItemError(item.get("id", "?"), kind, e["stage"], e["reason"], item.get("source_uri"))
    why = check_id(item.get("id", ""))
    if why:
        raise ItemError(item.get("id", ""), kind, "validate", why, item.get("source_uri"))
    if kind not in ("person", "garment"):
        raise ItemError(item.get("id", "?"), kind, "read", f"unknown item kind {kind!r}", item.get("source_uri"))


def derive_batch(items: list[dict], read: Callable[[str], bytes], resolution: int,
                 max_pixels: int = DEFAULT_MAX_PIXELS, est=None) -> list[tuple[str, dict[str, Any]]]:
    """``(table, row)`` for each item, in order; a bad item gives ``("errors", error row)``.

    Persons go through three phases so that the parser sees the whole batch at once: prepare
    (decode, pose, framing), parse (one batch), finish (DensePose, rows).
    """
    out: list[tuple[str, dict[str, Any]] | None] = [None] * len(items)
    drafts: dict[int, PersonDraft] = {}
    for i, item in enumerate(items):
        try:
            _check_item(item)
            if item["kind"] == "garment":
                out[i] = ("garments", _guard(item, lambda: derive_garment(item, read, resolution, max_pixels, est)))
            else:
                drafts[i] = _guard(item, lambda: prepare_person(item, read, resolution, max_pixels, est))
        except ItemError as exc:
            out[i] = ("errors", exc.row())
    try:
        parse_drafts(list(drafts.values()), est)
    except Exception:  # noqa: BLE001 - a failed batch: parse one by one to find the item
        for i, d in list(drafts.items()):
            try:
                _guard(d.ctx.item, lambda: parse_drafts([d], est))
            except ItemError as exc:
                out[i] = ("errors", exc.row())
                del drafts[i]
    for i, d in drafts.items():
        try:
            out[i] = ("persons", _guard(d.ctx.item, lambda: finish_person(d, read, resolution, max_pixels, est)))
        except ItemError as exc:
            out[i] = ("errors", exc.row())
    return out  # type: ignore[return-value]


def derive_item(item: dict, read: Callable[[str], bytes], resolution: int,
                max_pixels: int = DEFAULT_MAX_PIXELS, est=None) -> tuple[str, dict[str, Any]]:
    """(table, row) for one item; raises :class:`ItemError` for bad input."""
    table, row = derive_batch([item], read, resolution, max_pixels, est)[0]
    if table == "errors":
        raise ItemError(row["item_id"], row["kind"], row["stage"], row["reason"], row["source_uri"])
    return table, row
