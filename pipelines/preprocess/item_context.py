"""One input item while it is derived: its reads, its error, its provenance.

Bad input raises :class:`ItemError` (item id, kind, stage, reason, source URI); the pipeline turns
it into exactly one error row, so one broken photo never fails a catalogue run. Every read and
decode goes through :class:`ItemContext`, which names the URL that failed and records what was
given, derived or estimated for the row's ``provenance``.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import numpy as np
from PIL import Image

from gpvton_core.conditions import DERIVATION_VERSION
from gpvton_core.conditions import resize as rs
from infra.storage import sanitize_id
from pipelines.preprocess.image_decoding import open_image, to_labels


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
            return open_image(data, self.max_pixels)
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
