"""Thumbnails only where a reviewer looks first: small JPEGs (person | garment | try-on) of the
chosen rows — the first pages of the worst-first order and every fail / error row.

Try-on thumbnails are keyed by the render's content-versioned key, person / garment ones by the
content key of the photo, so a rerun makes only what is new and deletes thumbnails no row uses any
more (``thumbs/stamp.json`` holds the size they were made at: another size remakes them all).
Person and garment photos are shard rows, decoded by :mod:`gpvton_core.rows`; renders are the
job's own JPEGs. One broken image never stops the report: it is listed as a problem.
"""

from __future__ import annotations

import hashlib
import io
import logging
import posixpath
from typing import Any, Callable, Optional

from pipelines.report.writer import parallel

log = logging.getLogger("gpvton.report")

THUMBS_VERSION = 2
STAMP_KEY = "thumbs/stamp.json"


def tryon_thumb_key(output_key: str) -> str:
    """``thumbs/tryon/CAT/PERSON/GARMENT-VERSION.jpg``: the render's own content-versioned key."""
    rel = output_key.split("/", 1)[1] if output_key.startswith("renders/") else output_key
    return "thumbs/tryon/" + posixpath.splitext(rel)[0] + ".jpg"


def photo_thumb_key(kind: str, item_id: str, content_key: Optional[str]) -> str:
    """``thumbs/KIND/ID-HASH.jpg``: a new photo of the same id gets a new thumbnail."""
    from infra.storage import sanitize_id

    tail = f"-{hashlib.sha1(content_key.encode()).hexdigest()[:10]}" if content_key else ""
    return f"thumbs/{kind}/{sanitize_id(item_id)}{tail}.jpg"


class _Thumbnailer:
    """Writes one thumbnail per call; a failure becomes a line of ``problems``, never an exception."""

    def __init__(self, out, height: int) -> None:
        self.out, self.height = out, height
        self.problems: list[str] = []

    def _write(self, key: str, image: Callable[[], Any]) -> Optional[str]:
        from PIL import Image

        try:
            im = image()
            w = max(1, round(im.width * self.height / im.height))
            im = im.resize((w, self.height), Image.BILINEAR, reducing_gap=2.0) if im.height > self.height else im
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=80, optimize=True)
            self.out.write_bytes(key, buf.getvalue())
            return key
        except Exception as exc:  # noqa: BLE001 - one broken image must not stop the report
            self.problems.append(f"{key}: {type(exc).__name__}: {exc}")
            return None

    def of_render(self, key: str, data: bytes) -> Optional[str]:
        """A try-on render (the job's JPEG/PNG output)."""
        def image():
            from PIL import Image

            with Image.open(io.BytesIO(data)) as im:
                return im.convert("RGB")

        return self._write(key, image)

    def of_shard_photo(self, key: str, png: bytes) -> Optional[str]:
        """A person / garment photo: a shard row's ``image_png``."""
        def image():
            from PIL import Image

            from gpvton_core.rows import decode_rgb

            return Image.fromarray(decode_rgb(png))

        return self._write(key, image)


def _tryon_thumbnails(job, thumbs: _Thumbnailer, todo: list[tuple[str, str]], workers: int) -> set[str]:
    """Thumbnails of the ``(render key, thumbnail key)`` pairs; the keys written."""
    def one(item: tuple[str, str]) -> Optional[str]:
        render, key = item
        try:
            data = job.read_bytes(render)   # no HEAD first: a missing render is the exception
        except Exception as exc:  # noqa: BLE001 - a missing render shows as a blank tile
            thumbs.problems.append(f"{render}: {type(exc).__name__}: {exc}")
            return None
        return thumbs.of_render(key, data)

    return {k for k in parallel(one, todo, workers) if k}


def _shard_thumbnails(shards, kind: str, id_col: str, wanted: dict[str, str], thumbs: _Thumbnailer,
                      workers: int) -> set[str]:
    """Thumbnails of the wanted ids, shard files read in parallel; of each only the id column, then
    the image column of the row groups that hold a wanted id."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from infra.shards import ShardSet

    ids = sorted(wanted)

    def one(key: str) -> list[str]:
        pf = pq.ParquetFile(io.BytesIO(shards.read_bytes(key)))
        made = []
        for g in range(pf.metadata.num_row_groups):
            got = pf.read_row_group(g, columns=[id_col]).column(0)
            hit = pc.is_in(got, value_set=pa.array(ids, got.type))
            if not pc.any(hit).as_py():
                continue
            t = pf.read_row_group(g, columns=[id_col, "image_png"]).filter(hit)
            for item, png in zip(t.column(0).to_pylist(), t.column(1).to_pylist()):
                k = thumbs.of_shard_photo(wanted[item], png) if item in wanted else None
                if k:
                    made.append(k)
        return made

    parts = ShardSet(shards.root, storage=shards).parts(kind)    # the current generation, not a listing
    return {k for ks in parallel(one, parts, workers) for k in ks}


def _photo_thumbnails(shards_url: Optional[str], kind: str, id_col: str, keys: dict[str, Optional[str]],
                      existing: set[str], thumbs: _Thumbnailer, workers: int) -> int:
    """Make the ``kind`` ("persons" / "garments") thumbnails ``keys`` lacks; a key that could not be
    made becomes None (the tile shows no photo). Returns how many were made."""
    from infra.storage import Storage

    wanted = {i: k for i, k in keys.items() if k not in existing}
    written: set[str] = set()
    if wanted and not shards_url:
        thumbs.problems.append(f"job.json names no shards: no {kind} thumbnails")
    elif wanted:
        try:
            written = _shard_thumbnails(Storage(shards_url), kind, id_col, wanted, thumbs, workers)
        except Exception as exc:  # noqa: BLE001 - shards moved or unreadable
            thumbs.problems.append(f"{kind} shards at {shards_url}: {type(exc).__name__}: {exc}")
    for i, k in list(keys.items()):
        if k not in existing and k not in written:
            keys[i] = None
    return len(written)


def make_thumbnails(job, out, chosen: list[dict], meta: dict, height: int, workers: int,
                    listed: set[str]) -> dict[str, Any]:
    """Write the person / garment / try-on thumbnails of the ``chosen`` rows that do not exist yet,
    delete the ones no chosen row uses; return their keys per row identity."""
    stamp = {"version": THUMBS_VERSION, "height": height}
    try:
        same = out.read_json(STAMP_KEY) == stamp
    except (FileNotFoundError, ValueError):
        same = False
    present = {k for k in listed if k.startswith("thumbs/") and k.endswith(".jpg")}
    existing = present if same else set()

    pkey: dict[str, Optional[str]] = {r["person_id"]: photo_thumb_key("person", r["person_id"], r.get("person_key"))
                                      for r in chosen}
    gkey: dict[str, Optional[str]] = {r["garment_id"]: photo_thumb_key("garment", r["garment_id"],
                                                                       r.get("garment_key")) for r in chosen}
    tkey = {r["output_key"]: tryon_thumb_key(r["output_key"]) for r in chosen
            if r.get("output_key") and r.get("flag") != "error"}
    thumbs = _Thumbnailer(out, height)
    made = {"person": 0, "garment": 0, "tryon": 0}
    done = _tryon_thumbnails(job, thumbs, [(r, k) for r, k in tkey.items() if k not in existing], workers)
    made["tryon"] = len(done)
    tkey = {r: k for r, k in tkey.items() if k in existing or k in done}
    shards_url = (meta.get("config") or {}).get("shards")
    made["person"] = _photo_thumbnails(shards_url, "persons", "person_id", pkey, existing, thumbs, workers)
    made["garment"] = _photo_thumbnails(shards_url, "garments", "garment_id", gkey, existing, thumbs, workers)
    used = set(tkey.values()) | {k for k in pkey.values() if k} | {k for k in gkey.values() if k}
    stale = sorted(k for k in present if k not in used)
    parallel(out.delete, stale, workers)
    out.write_json(STAMP_KEY, stamp)
    if thumbs.problems:
        log.warning("report: %d thumbnails could not be made (first: %s)", len(thumbs.problems), thumbs.problems[0])
    return {"person": pkey, "garment": gkey, "tryon": tkey, "made": made, "deleted": len(stale),
            "problems": thumbs.problems}
