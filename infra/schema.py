"""The Arrow schemas of every table gpvton writes: the single source of truth.

Readers accept empty shards (Beam may leave some shard files empty) and check the schema
version in ``manifest.json``. Images and masks are PNG bytes so that shards stay compact and
lossless; masks/label maps are single-channel (mode ``L``) PNGs holding the integer labels.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 3   # 2: persons carry frame_box / photo size (raw photos framed by preprocess)
                     # 3: persons and garments carry content_key (incremental preprocess)

# infra may not import gpvton_core, so the two vocabularies the tables hold are stated here too;
# tests/test_vocabulary.py checks them equal to gpvton_core's (conditions.labels, scores).
CATEGORIES = ("upper", "lower", "dresses")

PERSONS = pa.schema([
    pa.field("person_id", pa.string(), nullable=False),
    pa.field("categories", pa.list_(pa.string()), nullable=False),   # garment categories this photo takes
    pa.field("source", pa.string(), nullable=False),                  # vitonhd / dresscode / manifest / synthetic
    pa.field("source_uri", pa.string(), nullable=False),
    pa.field("height", pa.int32(), nullable=False),
    pa.field("width", pa.int32(), nullable=False),
    pa.field("image_png", pa.binary(), nullable=False),               # RGB
    pa.field("parsing_png", pa.binary(), nullable=False),             # 29-label GP-VTON parsing (L)
    pa.field("densepose_png", pa.binary(), nullable=False),           # DensePose part index 0..24 (L)
    pa.field("keypoints", pa.list_(pa.float32()), nullable=False),    # BODY_25 x,y,conf ×25 (pixels)
    pa.field("worn_garment_id", pa.string()),                         # paired datasets: garment worn
    pa.field("pc_ratio", pa.float32()),                               # DGT person–garment ratio
    pa.field("frame_box", pa.list_(pa.int32())),                      # [x0,y0,x1,y1] of the working frame in
                                                                      # the photo's pixels; null = whole photo
    pa.field("photo_height", pa.int32()),                             # the decoded photo's size (EXIF-rotated)
    pa.field("photo_width", pa.int32()),
    pa.field("provenance", pa.string(), nullable=False),              # JSON: given / derived / estimated, models
    pa.field("content_key", pa.string(), nullable=False),             # hash of the inputs this row derives from
])

GARMENTS = pa.schema([
    pa.field("garment_id", pa.string(), nullable=False),
    pa.field("category", pa.string(), nullable=False),                # upper / lower / dresses
    pa.field("source", pa.string(), nullable=False),
    pa.field("source_uri", pa.string(), nullable=False),
    pa.field("height", pa.int32(), nullable=False),
    pa.field("width", pa.int32(), nullable=False),
    pa.field("image_png", pa.binary(), nullable=False),               # RGB (background as photographed)
    pa.field("mask_png", pa.binary(), nullable=False),                # garment mask, L, {0,255}
    pa.field("parts_png", pa.binary(), nullable=False),               # L: 0 bg, 1 left, 2 middle, 3 right
    pa.field("provenance", pa.string(), nullable=False),
    pa.field("content_key", pa.string(), nullable=False),             # see pipelines/preprocess/identity.py
])

ERRORS = pa.schema([
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("kind", pa.string(), nullable=False),                    # person / garment / pair
    pa.field("stage", pa.string(), nullable=False),                   # read / decode / derive / ...
    pa.field("reason", pa.string(), nullable=False),
    pa.field("source_uri", pa.string()),
])

UNITS = pa.schema([
    pa.field("unit_id", pa.int32(), nullable=False),
    pa.field("category", pa.string(), nullable=False),
    pa.field("person_ids", pa.list_(pa.string()), nullable=False),
    pa.field("garment_ids", pa.list_(pa.string()), nullable=False),
    pa.field("pairs", pa.list_(pa.struct([("person_id", pa.string()),
                                          ("garment_id", pa.string()),
                                          ("version", pa.string())])), nullable=False),
])

FLAGS = ("ok", "warn", "fail", "error")

SCORES = pa.schema([
    pa.field("unit_id", pa.int32(), nullable=False),
    pa.field("person_id", pa.string(), nullable=False),
    pa.field("garment_id", pa.string(), nullable=False),
    pa.field("category", pa.string(), nullable=False),
    pa.field("paired", pa.bool_(), nullable=False),                   # garment is the one the person wears
    pa.field("output_uri", pa.string()),                              # null when the pair errored
    pa.field("output_key", pa.string()),                              # relative to the job root
    pa.field("warp_miou", pa.float32()),
    pa.field("preserve_ssim", pa.float32()),
    pa.field("ssim", pa.float32()),                                   # paired only
    pa.field("parse_miou", pa.float32()),                             # paired only
    pa.field("flag", pa.string(), nullable=False),                    # ok / warn / fail / error
    pa.field("reason", pa.string()),                                  # why warn / fail
    pa.field("error", pa.string()),                                   # the exception, for error rows
    pa.field("seconds", pa.float32()),                                # model time attributed to the pair
    pa.field("version", pa.string()),                                 # the render's content version (null: none)
])

TABLES = {"persons": PERSONS, "garments": GARMENTS, "errors": ERRORS}


def empty_table(schema: pa.Schema) -> pa.Table:
    return schema.empty_table()

# --- a render job's catalogue (infra/jobfolder.py) ------------------------------------------------

#: One row per current pair of a render catalogue: the pair, the keys it was rendered from, its render
#: and scores. ``version`` (from the three keys) is part of the image key.
INDEX = pa.schema([
    pa.field("person_id", pa.string(), nullable=False),
    pa.field("garment_id", pa.string(), nullable=False),
    pa.field("category", pa.string(), nullable=False),
    pa.field("person_key", pa.string(), nullable=False),
    pa.field("garment_key", pa.string(), nullable=False),
    pa.field("model_key", pa.string(), nullable=False),
    pa.field("version", pa.string(), nullable=False),
    pa.field("run_id", pa.string(), nullable=False),                   # the run that rendered it
    *[SCORES.field(n) for n in ("paired", "output_uri", "output_key", "warp_miou", "preserve_ssim", "ssim",
                                "parse_miou", "flag", "reason", "error", "seconds")],
])

CHANGE_KINDS = ("added", "updated", "retired")

#: A run's change list, for a publishing step: what to publish (added, updated) and to withdraw (retired).
CHANGES = pa.schema([
    pa.field("person_id", pa.string(), nullable=False),
    pa.field("garment_id", pa.string(), nullable=False),
    pa.field("category", pa.string(), nullable=False),
    pa.field("change", pa.string(), nullable=False),                   # added / updated / retired
    pa.field("output_key", pa.string()),                               # the new render (retired: the old one)
    pa.field("version", pa.string()),
    *[SCORES.field(n) for n in ("flag", "reason", "error", "warp_miou", "preserve_ssim", "ssim", "parse_miou")],
])
