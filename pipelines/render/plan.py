"""Planning a render job: the catalogue's ids, the pairing, and units of about ``unit_size`` pairs.

Pairs are grouped by (category, person block × garment block) so that a worker encodes each
garment and person of a unit once. The plan is deterministic (sorted ids); its digest decides
whether a rerun resumes the same job.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from pipelines.config import ConfigError, UserError
from pipelines.render.config import RenderConfig

log = logging.getLogger("gpvton.render")

PREFLIGHT_RETRY_S = 30.0  # the catalogue is read before anything is written: fail fast, rerun

ID_COLUMNS = {"persons": ["person_id", "categories", "source", "height", "width", "worn_garment_id"],
              "garments": ["garment_id", "category", "source", "height", "width"]}
KEY_COLUMN = "content_key"


def read_catalogue(cfg: RenderConfig, s3) -> tuple[Any, Any, dict, dict]:
    """(persons, garments) id tables sorted by id, the id → part-file index and the manifest.

    The tables carry ``content_key`` (shards written before content keys get one from the
    preprocess plan and the id, so a rebuild of such shards re-renders everything) and
    ``part`` (the part file of the row). Missing or empty shards are a :class:`UserError` that
    says where ``--shards`` points.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from infra.shards import ShardSet
    from infra.storage import Storage

    # a wrong endpoint fails fast: the catalogue is read before anything is written
    shards = ShardSet(cfg.shards, storage=Storage(cfg.shards, s3, retry_budget_s=PREFLIGHT_RETRY_S))
    hint = "point --shards at the output of 'gpvton preprocess'"
    try:
        manifest = shards.manifest
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"cannot read {shards.url('manifest.json')}: {exc}") from exc
    tables, index = {}, {}
    for name, cols in ID_COLUMNS.items():
        parts = shards.parts(name)
        if not parts:
            raise UserError(f"no {name} shards under {shards.url(name)}/: {hint}")
        read = []
        for part in parts:
            t = shards.read_part(part, columns=[*cols, KEY_COLUMN])
            if KEY_COLUMN not in t.column_names or t.column(KEY_COLUMN).null_count == t.num_rows > 0:
                legacy = [f"legacy:{manifest.get('plan', '')}:{i}" for i in t.column(cols[0]).to_pylist()]
                t = t.drop_columns([c for c in (KEY_COLUMN,) if c in t.column_names])
                t = t.append_column(KEY_COLUMN, pa.array(legacy, pa.string()))
            t = t.select([*cols, KEY_COLUMN]).append_column("part", pa.array([part] * t.num_rows, pa.string()))
            read.append(t)
        table = pa.concat_tables(read, promote_options="permissive")
        if table.num_rows == 0:
            raise UserError(f"the {name} shards under {shards.url(name)}/ are empty (0 rows): {hint}, and check "
                            f"its errors table ({shards.url('errors')}/)")
        table = table.take(pc.sort_indices(table, [(cols[0], "ascending")]))
        ids = table.column(cols[0]).to_pylist()
        first = [i == 0 or ids[i] != ids[i - 1] for i in range(len(ids))]   # one row per id
        if not all(first):
            table = table.filter(pa.array(first))
        tables[name] = table
        index[name] = dict(zip(table.column(cols[0]).to_pylist(), table.column("part").to_pylist()))
    return tables["persons"], tables["garments"], index, manifest


def detect_variant(cfg: RenderConfig, persons, garments, manifest: dict) -> str:
    if cfg.model.variant != "auto":
        return cfg.model.variant
    if manifest.get("variant") in ("vitonhd", "dresscode"):
        return manifest["variant"]
    cats = set(garments.column("category").to_pylist())
    srcs = set(persons.column("source").to_pylist()) | set(garments.column("source").to_pylist())
    if cats - {"upper"} or "dresscode" in srcs:
        return "dresscode"
    return "vitonhd"


def read_pairs_file(cfg: RenderConfig, s3) -> list[tuple[str, str]]:
    from infra.storage import filesystem, strip_scheme

    path = cfg.pairs_file or ""
    fs = filesystem(path, s3)
    try:
        with fs.open(strip_scheme(path), "rt") as fh:
            text = fh.read()
    except FileNotFoundError as exc:
        raise ConfigError(f"pairs_file not found: {path}") from exc
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = [x.strip() for x in (line.split(",") if "," in line else line.split())]
        if len(parts) < 2:
            raise ConfigError(f"{path}:{n}: expected 'person_id garment_id', got {line!r}")
        if n == 1 and parts[0] == "person_id":
            continue
        out.append((parts[0], parts[1]))
    return out


@dataclass
class PairSet:
    """The pairs a catalogue calls for, as row numbers into the (id-sorted) persons and garments
    tables: numpy arrays, so that a 10M-pair catalogue plans in seconds."""

    person: np.ndarray      # int64 row of persons
    garment: np.ndarray     # int64 row of garments
    category: np.ndarray    # int8 index into ``categories``
    categories: list[str]

    def __len__(self) -> int:
        return int(self.person.shape[0])

    def codes(self, n_garments: int) -> np.ndarray:
        return self.person * n_garments + self.garment

    def take(self, idx: np.ndarray) -> "PairSet":
        return PairSet(self.person[idx], self.garment[idx], self.category[idx], self.categories)


def plan_pairs(cfg: RenderConfig, persons, garments,
               pairs_list: Optional[list[tuple[str, str]]] = None) -> PairSet:
    """Every pair the settings call for (cross product, paired, or a pairs file), filtered by ids
    and categories and by what each photo can take."""
    pid = persons.column("person_id").to_pylist()
    gid = garments.column("garment_id").to_pylist()
    gcat = garments.column("category").to_pylist()
    p_cats = [set(c or []) for c in persons.column("categories").to_pylist()]
    keep_p = np.array([cfg.persons.keep(p) for p in pid], dtype=bool)
    keep_g = np.array([cfg.garments.keep(g) and c in cfg.categories for g, c in zip(gid, gcat)], dtype=bool)
    cat_code = {c: i for i, c in enumerate(cfg.categories)}
    parts: list[tuple[np.ndarray, np.ndarray, int]] = []
    if cfg.pairing == "cross":
        gcat_arr = np.array(gcat, dtype=object)
        for c, ci in cat_code.items():
            ps = np.flatnonzero(keep_p & np.array([c in cs for cs in p_cats], dtype=bool))
            gs = np.flatnonzero(keep_g & (gcat_arr == c))
            if len(ps) and len(gs):
                parts.append((np.repeat(ps, len(gs)), np.tile(gs, len(ps)), ci))
    else:
        prow = {p: i for i, p in enumerate(pid) if keep_p[i]}
        grow = {g: i for i, g in enumerate(gid) if keep_g[i]}
        if cfg.pairing == "paired":
            worn = persons.column("worn_garment_id").to_pylist()
            cand = sorted((p, w) for p, w in zip(pid, worn) if w and p in prow and w in grow)
        else:
            cand = list(dict.fromkeys(pairs_list or []))
            unknown = [(p, g) for p, g in cand if p not in prow or g not in grow]
            if unknown and len(unknown) == len(cand):
                raise ConfigError(f"none of the {len(cand)} pairs in {cfg.pairs_file} names a person and a "
                                  f"garment present in the shards (after filters), e.g. {unknown[0]}")
            if unknown:
                log.warning("%d pairs name ids missing from the shards/filters and are skipped, e.g. %s",
                            len(unknown), unknown[:3])
            cand = [(p, g) for p, g in cand if p in prow and g in grow]
        by_cat: dict[int, list[tuple[int, int]]] = {}
        for p, g in cand:
            c = gcat[grow[g]]
            if c in p_cats[prow[p]]:
                by_cat.setdefault(cat_code[c], []).append((prow[p], grow[g]))
            else:
                log.warning("pair %s × %s skipped: the photo does not take category %s", p, g, c)
        for ci in sorted(by_cat):
            arr = np.array(by_cat[ci], dtype=np.int64).reshape(-1, 2)
            parts.append((arr[:, 0], arr[:, 1], ci))
    if not parts:
        e = np.zeros(0, dtype=np.int64)
        return PairSet(e, e, np.zeros(0, dtype=np.int8), list(cfg.categories))
    return PairSet(np.concatenate([a for a, _, _ in parts]).astype(np.int64),
                   np.concatenate([b for _, b, _ in parts]).astype(np.int64),
                   np.concatenate([np.full(len(a), ci, dtype=np.int8) for a, _, ci in parts]),
                   list(cfg.categories))


def units_from_pairs(cfg: RenderConfig, persons, garments, pairs: PairSet, first_id: int = 0,
                     versions: Optional[list[str]] = None) -> list[dict]:
    """Deterministic units of about ``unit_size`` pairs: grouped by category and (person block ×
    garment block), so that a worker encodes each garment and person of a unit once.

    ``versions`` (one per pair) travel with the pairs: they name the render's image key.
    """
    pid = persons.column("person_id").to_pylist()
    gid = garments.column("garment_id").to_pylist()
    worn = {p: w for p, w in zip(pid, persons.column("worn_garment_id").to_pylist()) if w}
    units: list[dict] = []
    for ci, c in enumerate(pairs.categories):
        sel = np.flatnonzero(pairs.category == ci)
        if not len(sel):
            continue
        pp, gg = pairs.person[sel], pairs.garment[sel]
        vv = [versions[i] for i in sel] if versions is not None else None
        ps, gs = np.unique(pp), np.unique(gg)    # sorted rows = sorted ids
        garments_per_block = max(1, min(len(gs), int(math.ceil(math.sqrt(cfg.unit_size)))))
        persons_per_block = max(1, cfg.unit_size // garments_per_block)
        if len(ps) < persons_per_block:  # few persons: give the garment axis the rest of the unit
            persons_per_block = len(ps)
            garments_per_block = max(1, cfg.unit_size // persons_per_block)
        p_block = np.searchsorted(ps, pp) // persons_per_block
        g_block = np.searchsorted(gs, gg) // garments_per_block
        order = np.lexsort((gg, pp, g_block, p_block))
        cells = p_block[order] * (int(g_block.max()) + 1) + g_block[order]
        bounds = np.flatnonzero(np.diff(cells)) + 1
        chunk: list[int] = []
        # sparse pair sets: merge consecutive small cells up to unit_size
        for cell in np.split(order, bounds):
            cell = cell.tolist()
            if chunk and len(chunk) + len(cell) > cfg.unit_size:
                units.append(_unit(first_id + len(units), c, chunk, pid, gid, pp, gg, vv, worn))
                chunk = []
            chunk.extend(cell)
            while len(chunk) >= cfg.unit_size:
                units.append(_unit(first_id + len(units), c, chunk[:cfg.unit_size], pid, gid, pp, gg, vv, worn))
                chunk = chunk[cfg.unit_size:]
        if chunk:
            units.append(_unit(first_id + len(units), c, chunk, pid, gid, pp, gg, vv, worn))
    return units


def plan_units(cfg: RenderConfig, persons, garments, pairs_list: Optional[list[tuple[str, str]]] = None) -> list[dict]:
    """Units over every pair of the plan (see :func:`plan_pairs` and :func:`units_from_pairs`)."""
    return units_from_pairs(cfg, persons, garments, plan_pairs(cfg, persons, garments, pairs_list))


def _unit(uid: int, category: str, rows: list[int], pid: list[str], gid: list[str], pp, gg,
          versions: Optional[list[str]], worn: dict) -> dict:
    pairs = [{"person_id": pid[pp[i]], "garment_id": gid[gg[i]],
              **({"version": versions[i]} if versions is not None else {})} for i in rows]
    ps = sorted({p["person_id"] for p in pairs})
    return {"unit_id": uid, "category": category, "person_ids": ps,
            "garment_ids": sorted({p["garment_id"] for p in pairs}),
            "pairs": pairs, "worn": {p: worn[p] for p in ps if p in worn}}


def with_files(unit: dict, index: dict[str, dict[str, str]]) -> dict:
    """The unit plus the shard part-file of each of its ids: a worker reads only those rows.

    Travelling with the unit (small), the index never has to be an actor constructor argument.
    """
    return {**unit, "files": {"persons": {p: index["persons"][p] for p in unit["person_ids"] if p in index["persons"]},
                              "garments": {g: index["garments"][g] for g in unit["garment_ids"]
                                           if g in index["garments"]}}}


def units_table(units: list[dict]):
    import pyarrow as pa

    from infra.schema import UNITS

    return pa.Table.from_pylist([{k: u[k] for k in UNITS.names} for u in units], schema=UNITS)


def plan_digest(units: list[dict]) -> str:
    h = hashlib.sha256()
    for u in units:
        h.update(json.dumps([u["unit_id"], u["category"], [(p["person_id"], p["garment_id"]) for p in u["pairs"]]],
                            separators=(",", ":")).encode())
    return h.hexdigest()[:16]
