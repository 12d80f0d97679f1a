"""Where a preprocess generation's files live under the output URL, and what they are named.

Layout::

    manifest.json                 the current generation: its part files per table, counts, changes
    persons/part-NNNNN.parquet    part files, immutable; generation 1 (a fresh build) keeps the
    persons/part-gNNNN-NNNNN.parquet  historic names, later generations name theirs; ``-cNNNNN``
    garments/…  errors/…              parts are copies (kept rows of rewritten parts, compacted)
    preprocess_config.json        (written by job.py)
    _preprocess/gen-NNNN/plan.json        the generation's plan and its fingerprint
    _preprocess/gen-NNNN/group-NNNNN.done one marker per derived group (its three part files)
    _preprocess/gen-NNNN/copy-TABLE-NNNNN.done  one marker per copied part
    _preprocess/gen-NNNN/changes.parquet  kind, id, category, change (added / changed / retired)
    _preprocess/sources.parquet           stat cache of source-file hashes (identity.py)

Every module that writes, resumes or deletes generation files names them through here, so the
writer and the garbage collector cannot disagree about which file is whose.
"""

from __future__ import annotations

import io
import re

from infra.storage import Storage

STATE = "_preprocess"
GROUP_SIZE = 64          # items per group: the unit of resume, and the rows of a full part
MAX_SMALL_PARTS = 4      # more parts than this under GROUP_SIZE/2 rows in a table: merge them
ID_COLUMN = {"persons": "person_id", "garments": "garment_id", "errors": "item_id"}
KIND_TABLE = {"person": "persons", "garment": "garments"}


def gen_dir(gen: int) -> str:
    return f"{STATE}/gen-{gen:04d}"


def part_key(table: str, gen: int, index: int, copy: bool = False) -> str:
    """Generation 1 keeps the historic ``part-NNNNN`` names; later ones carry their number."""
    if gen == 1 and not copy:
        return f"{table}/part-{index:05d}.parquet"
    return f"{table}/part-g{gen:04d}-{'c' if copy else ''}{index:05d}.parquet"


def gen_file_pattern(gen: int) -> re.Pattern:
    """The file names (within a table folder) of generation ``gen``'s parts."""
    if gen == 1:
        return re.compile(r"^part-\d{5}\.parquet$")
    return re.compile(rf"^part-g{gen:04d}-c?\d{{5}}\.parquet$")


def write_parquet(storage: Storage, key: str, table) -> None:
    """One part file, written whole (Storage writes atomically), snappy-compressed."""
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf, compression="snappy")
    storage.write_bytes(key, buf.getvalue())
