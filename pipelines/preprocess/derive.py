"""Per-item derivation of a batch: read → decode → validate → derive → encode one shard row each.

Bad input raises :class:`~pipelines.preprocess.item_context.ItemError` inside the derivation; here
every item, good or bad, becomes exactly one ``(table, row)``, so a broken photo costs one error
row and never the batch. Persons go through three phases (:mod:`.person_derivation`) so that the
parser sees the whole batch at once.
"""

from __future__ import annotations

from typing import Any, Callable

from pipelines.preprocess.garment_derivation import derive_garment
from pipelines.preprocess.image_decoding import DEFAULT_MAX_PIXELS
from pipelines.preprocess.item_context import ItemError, check_id
from pipelines.preprocess.person_derivation import PersonDraft, finish_person, parse_drafts, prepare_person


def _guard(item: dict, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` for ``item``; any unexpected failure still becomes one :class:`ItemError`."""
    kind = item.get("kind", "?")
    try:
        return fn()
    except ItemError:
        raise
    except Exception as exc:  # noqa: BLE001 - an unexpected failure still becomes one error row
        raise ItemError(item.get("id", "?"), kind, "derive", f"{type(exc).__name__}: {exc}",
                        item.get("source_uri")) from exc


def _check_item(item: dict) -> None:
    kind = item.get("kind", "?")
    if item.get("error"):
        e = item["error"]
        raise ItemError(item.get("id", "?"), kind, e["stage"], e["reason"], item.get("source_uri"))
    why = check_id(item.get("id", ""))
    if why:
        raise ItemError(item.get("id", ""), kind, "validate", why, item.get("source_uri"))
    if kind not in ("person", "garment"):
        raise ItemError(item.get("id", "?"), kind, "read", f"unknown item kind {kind!r}", item.get("source_uri"))


def derive_batch(items: list[dict], read: Callable[[str], bytes], resolution: int,
                 max_pixels: int = DEFAULT_MAX_PIXELS, est=None) -> list[tuple[str, dict[str, Any]]]:
    """``(table, row)`` for each item, in order; a bad item gives ``("errors", error row)``.

    Persons go through three phases so that the parser sees the whole batch at once: prepare
    (decode, pose, framing), parse (one batch), finish (DensePose, rows).
    """
    out: list[tuple[str, dict[str, Any]] | None] = [None] * len(items)
    drafts: dict[int, PersonDraft] = {}
    for i, item in enumerate(items):
        try:
            _check_item(item)
            if item["kind"] == "garment":
                out[i] = ("garments", _guard(item, lambda: derive_garment(item, read, resolution, max_pixels, est)))
            else:
                drafts[i] = _guard(item, lambda: prepare_person(item, read, resolution, max_pixels, est))
        except ItemError as exc:
            out[i] = ("errors", exc.row())
    try:
        parse_drafts(list(drafts.values()), est)
    except Exception:  # noqa: BLE001 - a failed batch: parse one by one to find the item
        for i, d in list(drafts.items()):
            try:
                _guard(d.ctx.item, lambda: parse_drafts([d], est))
            except ItemError as exc:
                out[i] = ("errors", exc.row())
                del drafts[i]
    for i, d in drafts.items():
        try:
            out[i] = ("persons", _guard(d.ctx.item, lambda: finish_person(d, read, resolution, max_pixels, est)))
        except ItemError as exc:
            out[i] = ("errors", exc.row())
    return out  # type: ignore[return-value]


def derive_item(item: dict, read: Callable[[str], bytes], resolution: int,
                max_pixels: int = DEFAULT_MAX_PIXELS, est=None) -> tuple[str, dict[str, Any]]:
    """(table, row) for one item; raises :class:`ItemError` for bad input."""
    table, row = derive_batch([item], read, resolution, max_pixels, est)[0]
    if table == "errors":
        raise ItemError(row["item_id"], row["kind"], row["stage"], row["reason"], row["source_uri"])
    return table, row
