"""The delivered images: their keys, the paste-back composite, the original frame, encoding and writes.

``JOB/renders/CATEGORY/PERSON/GARMENT.EXT`` (ids through ``sanitize_id``; keys stay under the job
root), optional debug images under ``JOB/debug/``. Images are encoded and written on writer
threads, so a batch's writes overlap the next batch's compute; every write goes through
:class:`infra.storage.Storage` (atomic, retried with exponential backoff).
"""

from __future__ import annotations

import io
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from workers.render.lru import LruCache

if TYPE_CHECKING:
    from torch import Tensor

    from infra.storage import S3Settings, Storage

# the original photo, where the working image sits in it (frame_box) and the paste-back weights
OriginalFrame = tuple[np.ndarray, Optional[list[int]], Any]


def paste_back(tryon: Tensor, photo: Tensor, out: Any, background: Tensor, part_cls: Tensor) -> tuple[Tensor, Tensor]:
    """The delivered image: the photo's own pixels where nothing may change (the generator-stage
    preserve region and the background, clear of the warped garment), feathered into the
    generated pixels; returns it in [−1, 1] and the blend weights."""
    from gpvton_core import composite as cp

    band = cp.band_width(tryon.shape[-2])
    garment = (out.warped_label == part_cls[:, :, None, None]).any(dim=1, keepdim=True).float()
    keep = cp.keep_region(out.preserve_gen.float(), background, garment, clearance=max(1, band // 2))
    alpha = cp.feather(keep, band)
    delivered = cp.paste_back((tryon + 1) / 2, (photo.float() + 1) / 2, alpha)
    return delivered * 2 - 1, alpha


class OriginalPhotos:
    """The persons' original photos (RGB, EXIF orientation applied), a few kept per worker."""

    def __init__(self, s3: Optional[S3Settings], capacity: int = 8):
        self.s3 = s3
        self.cache: LruCache[str, np.ndarray] = LruCache(capacity)

    def get(self, person_id: str, uri: Optional[str]) -> np.ndarray:
        if person_id in self.cache:
            return self.cache.get(person_id)
        from PIL import Image, ImageOps

        from infra.storage import filesystem, with_retries

        if not uri:
            raise ValueError(f"person {person_id!r} has no source_uri in the shards")

        def read() -> bytes:
            fs = filesystem(uri, self.s3)
            path = uri[len("file://"):] if uri.startswith("file://") else uri
            with fs.open(path, "rb") as fh:
                return fh.read()

        data = with_retries(read, what=f"read {uri}")
        photo = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
        self.cache.put(person_id, photo)
        return photo


def to_uint8(t: Tensor) -> np.ndarray:
    """A C×H×W image in [−1, 1] → H×W×C uint8."""
    return (((t.clamp(-1, 1) + 1) / 2) * 255).round().byte().permute(1, 2, 0).numpy()


def encode_array(arr: np.ndarray, fmt: str, quality: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    img = Image.fromarray(arr)
    if fmt in ("jpg", "jpeg"):
        img.save(buf, format="JPEG", quality=quality)
    elif fmt == "webp":
        img.save(buf, format="WEBP", quality=quality)
    else:
        img.save(buf, format="PNG")
    return buf.getvalue()


def label_png(label: Tensor) -> bytes:
    """A warped label map as a visible grey-level PNG (debug output)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((label.numpy().astype(np.uint8) * 25)).save(buf, format="PNG")
    return buf.getvalue()


class ImageWriter:
    """Encodes and stores each pair's images on a pool of writer threads."""

    def __init__(self, storage: Storage, image_format: str, quality: int, threads: int):
        self.storage = storage
        self.image_format = image_format
        self.quality = quality
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="gpvton-write")

    def output_key(self, category: str, person_id: str, garment_id: str, ext: Optional[str] = None,
                   prefix: str = "renders", version: str = "") -> str:
        from infra.jobfolder import render_key

        return render_key(category, person_id, garment_id, version, ext or self.image_format, prefix)

    def submit(self, key: str, category: str, p: str, g: str, tryon: Tensor, cloth: Optional[Tensor],
               label: Optional[Tensor], original: Optional[OriginalFrame], version: str) -> Future:
        """Queue :meth:`write` on the writer threads; the future raises what the write raised."""
        return self._pool.submit(self.write, key, category, p, g, tryon, cloth, label, original, version)

    def write(self, key: str, category: str, p: str, g: str, tryon: Tensor, cloth: Optional[Tensor],
              label: Optional[Tensor], original: Optional[OriginalFrame] = None, version: str = "") -> None:
        """The try-on at ``key`` (placed back into the original photo when given), then the debug images."""
        if original is None:
            self.storage.write_bytes(key, encode_array(to_uint8(tryon), self.image_format, self.quality))
        else:   # back into the original photo at its resolution (the photo's own pixels where alpha is 1)
            from gpvton_core.composite import place_in_photo

            photo, box, alpha = original
            full = place_in_photo(to_uint8(tryon), photo, box, None if alpha is None else alpha.numpy())
            self.storage.write_bytes(key, encode_array(full, self.image_format, self.quality))
        if cloth is not None:
            self.storage.write_bytes(self.output_key(category, p, g, "warped.png", "debug", version),
                                     encode_array(to_uint8(cloth), "png", self.quality))
        if label is not None:
            self.storage.write_bytes(self.output_key(category, p, g, "label.png", "debug", version),
                                     label_png(label))
