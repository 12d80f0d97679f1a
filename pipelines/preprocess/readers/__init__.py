"""Input readers: turn a dataset folder or a manifest into picklable item descriptions.

Readers only list files and read small index files (pair lists, manifest tables) in the driver;
the heavy reading and decoding happens in the Beam workers (``derive.py``). Every path is an
fsspec URL, so local folders and ``s3://`` buckets work alike.

Items are plain dicts:

* person: ``kind, id, source, source_uri, image, categories, keypoints, keypoints_format
  ("openpose" | "coco18"), keypoints_ref_hw (None = image size), parsing (29-label), lip_parsing,
  atr_parsing, densepose (grey index), densepose_rendered, worn_garment_id, worn_garment``
  (``{"image", "mask", "category"}`` of the worn garment, for ``pc_ratio``) — annotation entries
  are URLs or None;
* garment: ``kind, id, source, source_uri, image, category, mask, parts``;
* error: ``kind, id, source_uri, error: {stage, reason}`` (an item that cannot even be described,
  e.g. a manifest row without image; it becomes one error row).

Supported inputs (``KIND:URL``):

* ``vitonhd`` (also ``hrviton``): ``<root>/{train,test}/image|cloth|cloth-mask|image-parse-v3|
  openpose_json|image-densepose|densepose|parse-bytedance(_512)``, pairs ``<root>/{split}_pairs_paired.txt``;
* ``dresscode``: ``<root>/{upper_body,lower_body,dresses}/images/ID_0.jpg`` (person),
  ``ID_1.jpg`` (garment), ``keypoints/ID_2.json`` (COCO-18 at 384×512), ``label_maps/ID_4.png``,
  ``dense/ID_5.png``, ``image-densepose/ID_0.jpg``, pair lists ``*_pairs*.txt``;
* ``manifest``: a folder with ``garments.{csv,jsonl,parquet}`` and/or ``persons.{...}``;
* ``photos``: bare photos with no annotations (see :func:`read_photos`); every missing annotation
  is estimated, and the photo is framed around its subject.

In every kind, an item that carries some annotations keeps them; only the missing ones are
estimated (``derive.py``), and ``provenance`` records which were given and which estimated.
"""

from __future__ import annotations

from typing import Iterable

from infra.storage import S3Settings

from .common import ReaderError, normalize_category
from .datasets import read_dresscode, read_vitonhd
from .manifest import read_manifest
from .photos import read_photos

INPUT_KINDS = ("vitonhd", "hrviton", "dresscode", "manifest", "photos")
READERS = {"vitonhd": read_vitonhd, "hrviton": read_vitonhd, "dresscode": read_dresscode,
           "manifest": read_manifest, "photos": read_photos}


def parse_input(spec: str) -> tuple[str, str]:
    """``KIND:URL`` → (kind, url). URL may itself contain ``://``."""
    if ":" not in spec:
        raise ReaderError(f"input {spec!r} must look like KIND:URL with KIND in {INPUT_KINDS}")
    kind, url = spec.split(":", 1)
    kind = kind.strip().lower()
    if kind not in READERS:
        raise ReaderError(f"unknown input kind {kind!r}; choose from {', '.join(INPUT_KINDS)}")
    if not url:
        raise ReaderError(f"input {spec!r} has an empty URL")
    return kind, url


def read_inputs(inputs: Iterable[tuple[str, str]], s3: S3Settings | None = None) -> list[dict]:
    """All items of all inputs, in input order (duplicates are resolved by the pipeline)."""
    items: list[dict] = []
    for kind, url in inputs:
        source = "vitonhd" if kind == "hrviton" else kind
        items.extend(READERS[kind](url, s3, source=source))
    return items


__all__ = ["ReaderError", "normalize_category", "parse_input", "read_dresscode", "read_inputs", "read_manifest",
           "read_photos", "read_vitonhd"]
