"""Training data from the condition shards: which examples a stage trains on, how one is decoded,
and which of them each step takes.

* warp / generator train on *pairs*: persons with a ``worn_garment_id`` joined with that garment
  (VITON-HD's warp variant has rules for upper garments only, so ``vitonhd`` keeps the upper pairs);
* the parser trains on every person's photo and its 29-label parsing;
* rows are decoded by :mod:`gpvton_core.rows` (the one decoder of the shards' PNG columns) and
  resized to the training resolution; no augmentation here (GPVTON.md §8.2: images as stored);
* :func:`batch_indices` makes a step a pure function of (seed, step), so resuming is exact.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from gpvton_core.conditions.labels import variant_categories
from gpvton_core.rows import decode_garment_row, decode_labels, decode_person_row, decode_rgb
from infra.shards import ShardSet
from infra.storage import S3Settings, Storage


def _storage(shards: str, s3: Optional[dict]) -> Storage:
    return Storage(shards, S3Settings(**s3) if s3 else None)


def _read_table(storage: Storage, prefix: str, columns: Optional[list[str]] = None):
    """The table's current rows (the parts the shards' manifest lists), or None when it has none."""
    t = ShardSet(storage.root, storage.s3, storage=storage).read_table(prefix, columns)
    return t if t.num_rows else None


def _usable_categories(variant: str, categories: Optional[list[str]]) -> set[str]:
    """The categories asked for (default: all) that the variant's warp has rules for."""
    return set(categories or variant_categories(variant)) & set(variant_categories(variant))


def list_pairs(shards: str, variant: str, s3: Optional[dict] = None,
               categories: Optional[list[str]] = None) -> tuple[list[dict], dict[str, dict]]:
    """Training pairs ``{"person": row, "garment_id"}`` sorted by person id, and the garment rows by id."""
    st = _storage(shards, s3)
    persons = _read_table(st, "persons")
    garments = _read_table(st, "garments")
    if persons is None or garments is None:
        raise ValueError(f"{shards}: no persons or no garments in the shards")
    grows = {r["garment_id"]: r for r in garments.to_pylist()}
    cats = _usable_categories(variant, categories)
    pairs = []
    for r in persons.to_pylist():
        gid = r.get("worn_garment_id")
        g = grows.get(gid) if gid else None
        if g is not None and g["category"] in cats:
            pairs.append({"person": r, "garment_id": gid})
    pairs.sort(key=lambda p: p["person"]["person_id"])
    return pairs, grows


def decode_pair(pair: dict, grows: dict[str, dict], size: tuple[int, int], variant: str) -> dict[str, Any]:
    """One pair's training sample (:func:`gpvton_core.training.batch.make_sample`) at ``size``."""
    from gpvton_core.training.batch import make_sample, resize_arrays

    r, g = pair["person"], grows[pair["garment_id"]]
    p, gd = decode_person_row(r), decode_garment_row(g)
    img, (parsing, dp), kp = resize_arrays(p["image"], [p["parsing"], p["densepose"]], p["keypoints"], size)
    gimg, (gmask, gparts), _ = resize_arrays(gd["image"], [gd["mask"], gd["parts"]], None, size)
    person = {"person_id": r["person_id"], "image": np.ascontiguousarray(img), "parsing": parsing,
              "densepose": dp, "keypoints": kp, "pc_ratio": r.get("pc_ratio")}
    garment = {"garment_id": g["garment_id"], "category": g["category"], "image": np.ascontiguousarray(gimg),
               "mask": gmask, "parts": gparts}
    return make_sample(person, garment, variant)


def list_persons(shards: str, s3: Optional[dict] = None) -> list[dict]:
    """Every person row (id, image, 29-label parsing), sorted by id: the parser's training data."""
    persons = _read_table(_storage(shards, s3), "persons", ["person_id", "image_png", "parsing_png"])
    rows = persons.to_pylist() if persons is not None else []
    return sorted(rows, key=lambda r: r["person_id"])


def decode_person(row: dict, size: tuple[int, int], labels: str) -> tuple[np.ndarray, np.ndarray]:
    """A person row → (RGB H×W×3 uint8, labels H×W uint8 in the ``labels`` scheme) at ``size``."""
    from gpvton_core.parser import collapse_gp29
    from gpvton_core.training.batch import resize_arrays

    img, (parsing,), _ = resize_arrays(decode_rgb(row["image_png"]), [decode_labels(row["parsing_png"])], None, size)
    return np.ascontiguousarray(img), collapse_gp29(parsing, labels)


def count_examples(shards: str, stage: str, variant: str = "vitonhd", s3: Optional[dict] = None,
                   categories: Optional[list[str]] = None) -> int:
    """How many training examples the shards give ``stage`` (ids only: cheap on the driver).

    Raises ValueError with what is wrong when there are none."""
    st = _storage(shards, s3)
    if not ShardSet(st.root, st.s3, storage=st).parts("persons"):
        raise ValueError(f"{shards}: no condition shards there (no persons/*.parquet); "
                         "build them with gpvton preprocess")
    persons = _read_table(st, "persons", ["person_id", "worn_garment_id"])
    if persons is None:
        raise ValueError(f"{shards}: the shards hold no persons")
    if stage == "parser":
        return persons.num_rows
    garments = _read_table(st, "garments", ["garment_id", "category"])
    cats = _usable_categories(variant, categories)
    gcat = dict(zip(garments.column("garment_id").to_pylist(), garments.column("category").to_pylist())) \
        if garments is not None else {}
    n = sum(1 for g in persons.column("worn_garment_id").to_pylist() if g and gcat.get(g) in cats)
    if not n:
        raise ValueError(f"{shards}: no training pairs (persons with a worn_garment_id whose garment is "
                         f"{' or '.join(sorted(cats)) or 'of a usable category'}) for the {variant} {stage}")
    return n


def batch_indices(n: int, step: int, steps_per_epoch: int, global_batch: int, seed: int) -> list[int]:
    """Global batch of ``step``: a slice of the per-epoch permutation seeded by (seed, epoch), wrapping."""
    epoch = step // steps_per_epoch
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    start = (step % steps_per_epoch) * global_batch
    return [int(perm[(start + i) % n]) for i in range(global_batch)]
