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
from typing import Any, Optional

from pipelines.config import ConfigError, UserError
from pipelines.render.config import RenderConfig

log = logging.getLogger("gpvton.render")

PREFLIGHT_RETRY_S = 30.0  # the catalogue is read before anything is written: fail fast, rerun

ID_COLUMNS = {"persons": ["person_id", "categories", "source", "height", "width", "worn_garment_id"],
              "garments": ["garment_id", "category", "source", "height", "width"]}


def read_catalogue(cfg: RenderConfig, s3) -> tuple[Any, Any, dict, dict]:
    """(persons, garments) id tables, the id → part-file index and the manifest.

    Missing or empty shards are a :class:`UserError` that says where ``--shards`` points.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from infra.storage import Storage, with_retries

    st = Storage(cfg.shards, s3, retry_budget_s=PREFLIGHT_RETRY_S)  # a wrong endpoint fails fast
    hint = "point --shards at the output of 'gpvton preprocess'"
    try:
        manifest = st.read_json("manifest.json") if st.exists("manifest.json") else {}
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"cannot read {st.url('manifest.json')}: {exc}") from exc
    tables, index = {}, {}
    for name, cols in ID_COLUMNS.items():
        files = st.list(name, ".parquet")
        if not files:
            raise UserError(f"no {name} shards under {st.url(name)}/: {hint}")
        parts, idx = [], {}
        for f in files:
            t = with_retries(lambda: pq.read_table(st._path(f), filesystem=st.fs, columns=cols), what=f"read {f}")
            for i in t.column(cols[0]).to_pylist():
                idx[i] = f
            parts.append(t)
        tables[name] = pa.concat_tables(parts)
        if tables[name].num_rows == 0:
            raise UserError(f"the {name} shards under {st.url(name)}/ are empty (0 rows): {hint}, and check "
                            f"its errors table ({st.url('errors')}/)")
        index[name] = idx
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
    from infra.storage import _strip, filesystem

    path = cfg.pairs_file or ""
    fs = filesystem(path, s3)
    try:
        with fs.open(_strip(path), "rt") as fh:
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


def plan_units(cfg: RenderConfig, persons, garments, pairs_list: Optional[list[tuple[str, str]]] = None) -> list[dict]:
    """Deterministic units: pairs grouped by category and (person block × garment block)."""
    p_rows = [r for r in persons.to_pylist() if cfg.persons.keep(r["person_id"])]
    g_rows = [r for r in garments.to_pylist()
              if cfg.garments.keep(r["garment_id"]) and r["category"] in cfg.categories]
    p_cats = {r["person_id"]: set(r["categories"] or []) for r in p_rows}
    g_cat = {r["garment_id"]: r["category"] for r in g_rows}
    worn = {r["person_id"]: r["worn_garment_id"] for r in p_rows if r.get("worn_garment_id")}
    by_cat: dict[str, list[tuple[str, str]]] = {}
    if cfg.pairing == "cross":
        for c in cfg.categories:
            ps = sorted(p for p, cs in p_cats.items() if c in cs)
            gs = sorted(g for g, gc in g_cat.items() if gc == c)
            by_cat[c] = [(p, g) for p in ps for g in gs]
    else:
        if cfg.pairing == "paired":
            cand = sorted((p, g) for p, g in worn.items())
            cand = [(p, g) for p, g in cand if g in g_cat]
        else:
            cand = list(dict.fromkeys(pairs_list or []))
            unknown = [(p, g) for p, g in cand if p not in p_cats or g not in g_cat]
            if unknown and len(unknown) == len(cand):
                raise ConfigError(f"none of the {len(cand)} pairs in {cfg.pairs_file} names a person and a "
                                  f"garment present in the shards (after filters), e.g. {unknown[0]}")
            if unknown:
                log.warning("%d pairs name ids missing from the shards/filters and are skipped, e.g. %s",
                            len(unknown), unknown[:3])
            cand = [(p, g) for p, g in cand if p in p_cats and g in g_cat]
        for p, g in cand:
            c = g_cat[g]
            if c in p_cats[p]:
                by_cat.setdefault(c, []).append((p, g))
            else:
                log.warning("pair %s × %s skipped: the photo does not take category %s", p, g, c)
    units: list[dict] = []
    for c in cfg.categories:
        pairs = by_cat.get(c, [])
        if not pairs:
            continue
        ps = sorted({p for p, _ in pairs})
        gs = sorted({g for _, g in pairs})
        gb = max(1, min(len(gs), int(math.ceil(math.sqrt(cfg.unit_size)))))
        pb = max(1, cfg.unit_size // gb)
        if len(ps) < pb:  # few persons: give the garment axis the rest of the unit
            pb = len(ps)
            gb = max(1, cfg.unit_size // pb)
        p_block = {p: i // pb for i, p in enumerate(ps)}
        g_block = {g: i // gb for i, g in enumerate(gs)}
        cells: dict[tuple[int, int], list[tuple[str, str]]] = {}
        for p, g in sorted(pairs, key=lambda x: (p_block[x[0]], g_block[x[1]], x[0], x[1])):
            cells.setdefault((p_block[p], g_block[g]), []).append((p, g))
        # sparse pair sets: merge consecutive small cells up to unit_size
        chunk: list[tuple[str, str]] = []
        for key in sorted(cells):
            cell = cells[key]
            if chunk and len(chunk) + len(cell) > cfg.unit_size:
                units.append(_unit(len(units), c, chunk, worn))
                chunk = []
            chunk.extend(cell)
            while len(chunk) >= cfg.unit_size:
                units.append(_unit(len(units), c, chunk[:cfg.unit_size], worn))
                chunk = chunk[cfg.unit_size:]
        if chunk:
            units.append(_unit(len(units), c, chunk, worn))
    return units


def _unit(uid: int, category: str, pairs: list[tuple[str, str]], worn: dict) -> dict:
    ps = sorted({p for p, _ in pairs})
    return {"unit_id": uid, "category": category, "person_ids": ps,
            "garment_ids": sorted({g for _, g in pairs}),
            "pairs": [{"person_id": p, "garment_id": g} for p, g in pairs],
            "worn": {p: worn[p] for p in ps if p in worn}}


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


def units_to_redo(job, retry_errors: bool = False) -> dict[int, int]:
    """Done units that a rerun renders again: unit id → its error rows to re-attempt.

    An error row whose ``error`` starts with ``infra.storage.TRANSIENT_PREFIX`` failed for a
    storage reason (an outage beyond the in-run retry budget), not for its input: a transient
    failure is not a result, so a plain rerun re-attempts it. Deterministic error rows (bad
    input, non-finite output) are re-attempted only with ``retry_errors`` (``--retry-errors``).
    The whole unit is rendered again and its score file replaced, so no pair is counted twice.
    """
    import io

    import pyarrow.parquet as pq

    from infra.storage import TRANSIENT_PREFIX

    redo: dict[int, int] = {}
    for key in job.iter_done("scores"):
        t = pq.read_table(io.BytesIO(job.read_bytes(key)), columns=["unit_id", "flag", "error"])
        n = sum(1 for f, e in zip(t.column("flag").to_pylist(), t.column("error").to_pylist())
                if f == "error" and (retry_errors or (e or "").startswith(TRANSIENT_PREFIX)))
        if n:
            redo[int(key.rsplit("unit-", 1)[1].split(".")[0])] = n
    return redo
