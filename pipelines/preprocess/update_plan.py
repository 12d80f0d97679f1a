"""The diff of a run's items against the committed shards, and the plan of the next generation.

Every item carries a ``content_key`` (:mod:`pipelines.preprocess.identity`); an item whose id and
key match a current row is unchanged and not derived again. New and changed items (and items
that errored last time: they have no row) are derived in deterministic groups. Current parts
whose rows all stay are kept by reference; a part that lost rows is rewritten without them (a
copy, no derivation), and once a table holds more than ``MAX_SMALL_PARTS`` parts under half of
``GROUP_SIZE`` rows, those are merged into full ones. The plan's fingerprint lets a crashed run
resume the same generation, and notice when its inputs changed meanwhile.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from infra.schema import TABLES
from infra.shards import ShardSet
from pipelines.preprocess.generation_layout import GROUP_SIZE, ID_COLUMN, KIND_TABLE, MAX_SMALL_PARTS

CHANGE_KINDS = ("added", "changed", "unchanged", "retired")


def plan_groups(items: list[dict], num_groups: int = 0) -> list[list[dict]]:
    """Deterministic groups: items sorted by (kind, id, source), cut into equal runs."""
    if not items:
        return []
    ordered = sorted(items, key=lambda it: (it.get("kind", "?"), str(it.get("id", "")), str(it.get("source_uri"))))
    n = num_groups if num_groups > 0 else max(1, -(-len(ordered) // GROUP_SIZE))
    n = max(1, min(n, len(ordered)))
    size = -(-len(ordered) // n)
    return [g for g in (ordered[i * size:(i + 1) * size] for i in range(n)) if g]


@dataclass
class Current:
    """What the committed manifest says: its generation (0: no shards) and, per content table,
    each part's rows as ``id → (content_key, category)`` in file order."""

    manifest: dict[str, Any]
    generation: int
    parts: dict[str, list[str]]
    rows: dict[str, dict[str, dict[str, tuple[str | None, str]]]]


def _category(table: str, value: Any) -> str:
    if table == "persons":
        return ";".join(value or [])
    return str(value or "")


def read_current(shards: ShardSet) -> Current:
    manifest = shards.manifest
    if not manifest:      # no committed shards (a fresh output, or an older run that crashed)
        return Current({}, 0, {t: [] for t in TABLES}, {"persons": {}, "garments": {}})
    gen = int(manifest.get("generation") or 1)
    parts = {t: shards.parts(t) for t in TABLES}
    rows: dict[str, dict[str, dict[str, tuple[str | None, str]]]] = {}
    for table in ("persons", "garments"):
        cols = [ID_COLUMN[table], "content_key", "categories" if table == "persons" else "category"]

        def ids(key: str, cols=cols, table=table) -> dict[str, tuple[str | None, str]]:
            t = shards.read_part(key, cols).to_pydict()
            return {i: (k, _category(table, c)) for i, k, c in zip(t[cols[0]], t["content_key"], t[cols[2]])}

        with ThreadPoolExecutor(8) as pool:
            rows[table] = dict(zip(parts[table], pool.map(ids, parts[table])))
    return Current(manifest, gen, parts, rows)


@dataclass
class Update:
    """The plan of one generation: what to derive, keep, copy; what changed."""

    generation: int
    groups: list[list[dict]]
    keep: dict[str, list[str]]                                  # table → parts kept by reference
    copies: dict[str, list[list[tuple[str, list[str]]]]]       # table → new parts: [(source, ids)]
    counts: dict[str, dict[str, int]]                           # table → change kind → ids
    changes: list[dict[str, str]]                               # kind, id, category, change
    dropped: dict[str, list[str]]                               # current parts that leave
    by_category: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    fingerprint: str = ""

    @property
    def derive(self) -> list[dict]:
        return [it for g in self.groups for it in g]

    def is_noop(self, current: Current) -> bool:
        """Nothing to derive or copy, no part with rows leaves, and no error rows to clear."""
        with_rows = {p for parts in current.rows.values() for p, ids in parts.items() if ids}
        return (not self.groups and not any(self.copies.values())
                and not with_rows.intersection(p for ps in self.dropped.values() for p in ps)
                and not (current.manifest.get("counts") or {}).get("errors"))


@dataclass
class _Changes:
    """Every input and current id classified: counts, per-category counts, the change list, and
    the ids whose current rows stay."""

    counts: dict[str, dict[str, int]]
    by_category: dict[str, dict[str, dict[str, int]]]
    changes: list[dict[str, str]]
    stay: dict[str, set[str]]


def _classify(items: list[dict], current: Current, force: bool) -> _Changes:
    """added / changed / unchanged for each input id, retired for each current id not in the input."""
    by_id: dict[str, dict[str, dict]] = {"persons": {}, "garments": {}}
    for it in items:
        table = KIND_TABLE.get(it.get("kind", ""))
        if table is not None and (not it.get("error") or it.get("id") not in by_id[table]):
            by_id[table][str(it.get("id"))] = it
    out = _Changes({t: {k: 0 for k in CHANGE_KINDS} for t in by_id}, {t: {} for t in by_id}, [], {})
    for table, inputs in by_id.items():
        cur = {i: v for part in current.rows.get(table, {}).values() for i, v in part.items()}
        out.stay[table] = set()
        for i, it in sorted(inputs.items()):
            cat = _category(table, it.get("categories") if table == "persons" else it.get("category"))
            if i not in cur:
                change = "added"
            elif it.get("error") or it.get("content_key") != cur[i][0]:
                change = "changed"
            else:
                change = "unchanged"
                if not force:
                    out.stay[table].add(i)
            out.counts[table][change] += 1
            out.by_category[table].setdefault(cat, dict.fromkeys(CHANGE_KINDS, 0))[change] += 1
            if change != "unchanged":
                out.changes.append({"kind": table[:-1], "id": i, "category": cat, "change": change})
        for i in sorted(set(cur) - set(inputs)):
            out.counts[table]["retired"] += 1
            out.by_category[table].setdefault(cur[i][1], dict.fromkeys(CHANGE_KINDS, 0))["retired"] += 1
            out.changes.append({"kind": table[:-1], "id": i, "category": cur[i][1], "change": "retired"})
    return out


def _plan_parts(current: Current, stay: dict[str, set[str]]
                ) -> tuple[dict[str, list[str]], dict[str, list[list[tuple[str, list[str]]]]], dict[str, list[str]]]:
    """Per content table: the parts kept by reference, the copy parts of rows that stay in
    rewritten (or compacted) parts, and the current parts that leave the manifest."""
    keep: dict[str, list[str]] = {}
    copies: dict[str, list[list[tuple[str, list[str]]]]] = {}
    dropped: dict[str, list[str]] = {}
    for table in ("persons", "garments"):
        parts = current.rows.get(table, {})
        whole = [p for p, ids in parts.items() if ids and set(ids) <= stay[table]]
        rewrite = [p for p, ids in parts.items() if set(ids) & stay[table] and p not in whole]
        small = [p for p in whole if len(parts[p]) < GROUP_SIZE // 2]
        if len(small) > MAX_SMALL_PARTS:        # compaction: many small parts become full ones
            rewrite += small
            whole = [p for p in whole if p not in small]
        keep[table] = whole
        dropped[table] = [p for p in current.parts.get(table, []) if p not in whole]
        rows = [(p, i) for p in sorted(rewrite) for i in parts[p] if i in stay[table]]
        chunks = [rows[k:k + GROUP_SIZE] for k in range(0, len(rows), GROUP_SIZE)]
        copies[table] = [[(p, [i for q, i in chunk if q == p]) for p in dict.fromkeys(q for q, _ in chunk)]
                         for chunk in chunks]
    dropped["errors"] = list(current.parts.get("errors", []))
    return keep, copies, dropped


def diff(items: list[dict], current: Current, force: bool = False, num_groups: int = 0) -> Update:
    """Classify every id (added / changed / unchanged / retired) and plan the generation."""
    ch = _classify(items, current, force)
    derive = [it for it in items
              if it.get("error") or str(it.get("id")) not in ch.stay.get(KIND_TABLE.get(it.get("kind", ""), ""), ())]
    keep, copies, dropped = _plan_parts(current, ch.stay)
    upd = Update(current.generation + 1, plan_groups(derive, num_groups), keep, copies, ch.counts, ch.changes,
                 dropped, ch.by_category)
    upd.fingerprint = hashlib.sha256(json.dumps(
        {"base": current.generation, "base_plan": current.manifest.get("plan"), "force": force,
         "groups": upd.groups, "keep": keep, "copies": copies}, sort_keys=True, default=str).encode()).hexdigest()
    return upd
