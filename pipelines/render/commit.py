"""The end of a render run: its score rows into the catalogue's index, and its change list.

Only rows that render tonight's key of a pair enter the index (a crashed run's rows for a key
that changed again since are left out); for a pair rendered twice in one run (a re-attempt) the
later unit's row wins. Pairs whose unit was lost keep their previous index row — the catalogue
serves the old render until the new one exists — and stay to do for the next run. Retired pairs
leave the index; their images stay until ``gpvton prune``.
"""

from __future__ import annotations

from typing import Any, Optional

import pyarrow as pa

from infra.jobfolder import JobFolder
from infra.schema import CHANGES, INDEX
from pipelines.render.delta import ADDED, Delta, versions


def commit(folder: JobFolder, delta: Delta, persons: pa.Table, garments: pa.Table, run_id: str,
           pairs_per_second: Optional[float]) -> dict:
    """Merge the work area into the index (one manifest write), write the change list; returns
    the new index manifest (with ``change_list`` and ``changed_rows``: this run's changes)."""
    todo = delta.todo
    pid = persons.column("person_id").to_pylist()
    gid = garments.column("garment_id").to_pylist()
    pkey = persons.column("content_key").to_pylist()
    gkey = garments.column("content_key").to_pylist()
    expect: dict[tuple[str, str], tuple[int, str, str, str]] = {}
    for i, v in zip(todo.tolist(), versions(delta, persons, garments, todo)):
        p, g = int(delta.pairs.person[i]), int(delta.pairs.garment[i])
        expect[(pid[p], gid[g])] = (int(delta.kind[i]), v, pkey[p], gkey[g])

    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for r in folder.read_unit_scores(folder.done_units()).to_pylist():   # ascending unit ids
        want = expect.get((r["person_id"], r["garment_id"]))
        if want is not None and r["version"] == want[1]:
            latest[(r["person_id"], r["garment_id"])] = r
    index_rows, changes = [], []
    for (p, g), r in latest.items():
        kind, version, pk, gk = expect[(p, g)]
        index_rows.append({**{k: r.get(k) for k in INDEX.names}, "person_key": pk, "garment_key": gk,
                           "model_key": delta.model_key, "version": version, "run_id": run_id})
        changes.append({**{k: r.get(k) for k in CHANGES.names}, "change": "added" if kind == ADDED else "updated"})
    retired = delta.retired
    ids = pa.table({"person_id": retired.column("person_id").cast(pa.string()),
                    "garment_id": retired.column("garment_id").cast(pa.string())})
    for r in folder.lookup(ids, ["person_id", "garment_id", "category", "output_key", "version", "flag",
                                 "error"]).to_pylist():
        changes.append({**{k: r.get(k) for k in CHANGES.names}, "change": "retired"})
    new_rows = pa.Table.from_pylist(index_rows, schema=INDEX)
    manifest = folder.commit_index(new_rows, ids, run_id, len(delta.pairs),
                                   extra={"pairs_per_second": pairs_per_second, "plan_pairs": len(delta.pairs),
                                          "model_key": delta.model_key})
    changes.sort(key=lambda r: (r["change"], r["category"], r["person_id"], r["garment_id"]))
    table = pa.Table.from_pylist(changes, schema=CHANGES)
    key = folder.write_changes(run_id, table)
    return {**manifest, "change_list": key, "changed_rows": table}
