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
from typing import Any, Callable

import numpy as np
from PIL import Image

from gpvton_core.conditions import DERIVATION_VERSION
from gpvton_core.conditions import densepose as dp
from gpvton_core.conditions import garment as gm
from gpvton_core.conditions import masks as mk
from gpvton_core.conditions import parsing as ps
from gpvton_core.conditions import pose as po
from gpvton_core.conditions import ratio as rt
from gpvton_core.conditions import resize as rs
from infra.storage import sanitize_id
from pipelines.schema import CATEGORIES

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
    return im


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


class Ctx:
    """Per-item context: reader + error wrapping + provenance."""

    def __init__(self, item: dict, read: Callable[[str], bytes], max_pixels: int):
        self.item, self._read, self.max_pixels = item, read, max_pixels
        self.id, self.kind = item["id"], item["kind"]
        self.provenance: dict[str, Any] = {"derivation_version": DERIVATION_VERSION}

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
def _keypoints(ctx: Ctx, image_hw: tuple[int, int]) -> np.ndarray:
    item = ctx.item
    url = item.get("keypoints")
    if not url:
        raise ctx.fail("validate", "no keypoints given (pose estimation is not part of preprocess)")
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


def derive_person(item: dict, read: Callable[[str], bytes], resolution: int,
                  max_pixels: int = DEFAULT_MAX_PIXELS) -> dict[str, Any]:
    ctx = Ctx(item, read, max_pixels)
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
    fit = rs.compute_fit(image_hw, (H, W), "crop")
    image = rs.resize_rgb(rgb, (H, W), mode="crop")
    kps = rs.transform_keypoints(_keypoints(ctx, image_hw), fit)

    if item.get("parsing"):
        gp = ctx.labels(item["parsing"], "parsing", image_hw, (H, W))
        ctx.provenance["parsing"] = "given:gpvton-29"
    elif item.get("lip_parsing"):
        lip = ctx.labels(item["lip_parsing"], "LIP parsing", image_hw, (H, W))
        try:
            gp = ps.from_lip(lip, kps)
        except ps.ParsingError as exc:
            raise ctx.fail("derive", str(exc), item["lip_parsing"]) from None
        ctx.provenance["parsing"] = "derived:lip+pose"
    elif item.get("atr_parsing"):
        atr = ctx.labels(item["atr_parsing"], "ATR parsing", image_hw, (H, W))
        try:
            gp = ps.from_atr(atr, kps)
        except ps.ParsingError as exc:
            raise ctx.fail("derive", str(exc), item["atr_parsing"]) from None
        ctx.provenance["parsing"] = "derived:atr+pose"
    else:
        raise ctx.fail("validate", "no human parsing given (parsing, lip_parsing or atr_parsing)")
    try:
        ps.validate(gp)
    except ps.ParsingError as exc:
        raise ctx.fail("validate", str(exc), item.get("parsing")) from None

    if item.get("densepose"):
        dpi = ctx.labels(item["densepose"], "densepose", image_hw, (H, W))
        if dpi.max() >= dp.NUM_PARTS:
            raise ctx.fail("validate", f"densepose index {int(dpi.max())} > 24", item["densepose"])
        ctx.provenance["densepose"] = "given:index"
    elif item.get("densepose_rendered"):
        rim = ctx.image(item["densepose_rendered"], "densepose rendering")
        ctx.check_size((rim.height, rim.width), image_hw, "densepose rendering", item["densepose_rendered"])
        rrgb = np.asarray(rim.convert("RGB"))
        if rrgb.shape[:2] != (H, W):
            rrgb = rs.resize_rgb(rrgb, (H, W), mode="crop")   # bicubic, then nearest colour
        dpi = dp.index_from_rendering(rrgb)
        ctx.provenance["densepose"] = "derived:colour-rendering"
    else:
        raise ctx.fail("validate", "no DensePose given (densepose or densepose_rendered)")

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
        "person_id": item["id"], "categories": cats, "source": item.get("source", "manifest"),
        "source_uri": item.get("source_uri") or item["image"], "height": H, "width": W,
        "image_png": png_bytes(image, "RGB"), "parsing_png": png_bytes(gp.astype(np.uint8), "L"),
        "densepose_png": png_bytes(dpi.astype(np.uint8), "L"),
        "keypoints": kps.astype(np.float32).reshape(-1).tolist(),
        "worn_garment_id": item.get("worn_garment_id"), "pc_ratio": None if pc is None else float(pc),
        "provenance": json.dumps(ctx.provenance, sort_keys=True),
    }


# --- garments -----------------------------------------------------------------------------------
def derive_garment_arrays(item: dict, read: Callable[[str], bytes], resolution: int,
                          max_pixels: int = DEFAULT_MAX_PIXELS) -> dict[str, Any]:
    ctx = Ctx(item, read, max_pixels)
    H, W = rs.working_size(resolution)
    cat = readers_normalize(item.get("category"))
    if cat is None:
        raise ctx.fail("validate", f"unknown category {item.get('category')!r}; use {list(CATEGORIES)}")
    im = ctx.image(item["image"], "image")
    rgb, note = to_rgb(im)
    if note:
        ctx.provenance["image_converted"] = note
    image_hw = (rgb.height, rgb.width)
    image = rs.resize_rgb(rgb, (H, W), mode="pad")
    if item.get("mask"):
        mim = ctx.image(item["mask"], "mask")
        ctx.check_size((mim.height, mim.width), image_hw, "mask", item["mask"])
        m8 = np.asarray(mim.convert("L"))
        if m8.shape != (H, W):
            m8 = rs.resize_labels(m8, (H, W), mode="pad")
        mask = gm.binarize_mask(m8)
        if not mask.any():
            raise ctx.fail("validate", "given garment mask is empty", item["mask"])
        ctx.provenance["mask"] = "given"
    else:
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
    return {"image": image, "mask": mask, "parts": parts, "category": cat, "provenance": ctx.provenance}


def readers_normalize(value: Any) -> str | None:
    from pipelines.preprocess.readers import normalize_category

    return normalize_category(value)


def derive_garment(item: dict, read: Callable[[str], bytes], resolution: int,
                   max_pixels: int = DEFAULT_MAX_PIXELS) -> dict[str, Any]:
    g = derive_garment_arrays(item, read, resolution, max_pixels)
    H, W = rs.working_size(resolution)
    return {
        "garment_id": item["id"], "category": g["category"], "source": item.get("source", "manifest"),
        "source_uri": item.get("source_uri") or item["image"], "height": H, "width": W,
        "image_png": png_bytes(g["image"], "RGB"),
        "mask_png": png_bytes((g["mask"] * 255).astype(np.uint8), "L"),
        "parts_png": png_bytes(g["parts"].astype(np.uint8), "L"),
        "provenance": json.dumps(g["provenance"], sort_keys=True),
    }


def derive_item(item: dict, read: Callable[[str], bytes], resolution: int,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[str, dict[str, Any]]:
    """(table, row) for one item; raises :class:`ItemError` for bad input."""
    kind = item.get("kind", "?")
    if item.get("error"):
        e = item["error"]
        raise ItemError(item.get("id", "?"), kind, e["stage"], e["reason"], item.get("source_uri"))
    why = check_id(item.get("id", ""))
    if why:
        raise ItemError(item.get("id", ""), kind, "validate", why, item.get("source_uri"))
    try:
        if kind == "person":
            return "persons", derive_person(item, read, resolution, max_pixels)
        if kind == "garment":
            return "garments", derive_garment(item, read, resolution, max_pixels)
    except ItemError:
        raise
    except Exception as exc:  # noqa: BLE001 - an unexpected failure still becomes one error row
        raise ItemError(item.get("id", "?"), kind, "derive", f"{type(exc).__name__}: {exc}",
                        item.get("source_uri")) from exc
    raise ItemError(item.get("id", "?"), kind, "read", f"unknown item kind {kind!r}", item.get("source_uri"))


# --- decoding of shard rows (used by render / train / tests) -----------------------------------
def decode_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def decode_person_row(row: dict[str, Any]) -> dict[str, Any]:
    """A persons-table row → arrays: image (H×W×3 uint8), parsing, densepose (H×W uint8),
    keypoints (25×3 float32), plus the scalar fields unchanged."""
    out = dict(row)
    out["image"] = decode_png(row["image_png"])
    out["parsing"] = decode_png(row["parsing_png"])
    out["densepose"] = decode_png(row["densepose_png"])
    out["keypoints"] = np.asarray(row["keypoints"], np.float32).reshape(25, 3)
    out["provenance"] = json.loads(row["provenance"])
    return out


def decode_garment_row(row: dict[str, Any]) -> dict[str, Any]:
    """A garments-table row → image (H×W×3 uint8), mask (bool H×W), parts (uint8 0..3)."""
    out = dict(row)
    out["image"] = decode_png(row["image_png"])
    out["mask"] = decode_png(row["mask_png"]) > 127
    out["parts"] = decode_png(row["parts_png"])
    out["provenance"] = json.loads(row["provenance"])
    return out
