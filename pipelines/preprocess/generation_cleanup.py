"""Deleting what no reader can reach: an abandoned generation, and parts the manifests left behind.

Readers follow ``manifest.json`` (:class:`infra.shards.ShardSet`), never a listing, so a file is
safe to delete once no manifest a reader may still hold lists it: the new one and the previous
one (a render that started on the previous generation keeps its files until the next run).
"""

from __future__ import annotations

from typing import Any

from infra.schema import TABLES
from infra.storage import Storage
from pipelines.preprocess.generation_layout import STATE, gen_dir, gen_file_pattern
from pipelines.preprocess.update_plan import Current


def discard_generation(storage: Storage, gen: int) -> None:
    """Remove an uncommitted generation's state and part files (no manifest lists them)."""
    for k in storage.list(gen_dir(gen)):
        storage.delete(k)
    pattern = gen_file_pattern(gen)
    for table in TABLES:
        for k in storage.list(table, ".parquet"):
            if pattern.match(k.split("/", 1)[1]):
                storage.delete(k)
    for k in storage.list(STATE):        # the flat state of gpvton before generations
        name = k[len(STATE) + 1:]
        if name == "plan.json" or (name.startswith("group-") and name.endswith(".done")):
            storage.delete(k)


def collect_garbage(storage: Storage, manifest: dict[str, Any], previous: Current) -> None:
    """Delete part files that neither this nor the previous generation lists, and the finished
    generations' markers and plans (their change lists stay)."""
    referenced = {k for keys in manifest["parts"].values() for k in keys}
    referenced |= {k for keys in previous.parts.values() for k in keys}
    for table in TABLES:
        for k in storage.list(table, ".parquet"):
            if k not in referenced:
                storage.delete(k)
    for k in storage.list(STATE):
        name = k.rsplit("/", 1)[1]
        if k.startswith(f"{STATE}/gen-") and name != "changes.parquet":
            storage.delete(k)
        elif k.count("/") == 1 and (name == "plan.json" or name.startswith("group-")):
            storage.delete(k)            # the flat state of gpvton before generations
