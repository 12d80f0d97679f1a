"""What eval reads: the catalogue's rows (the job's index, not the last run's unit score files), the
person photos and parsings of the shards, the renders and their debug label maps — decoded by the
one decoder of :mod:`gpvton_core.rows` — and the batching of same-sized images."""

from __future__ import annotations

from typing import Any, Iterator

#: the index columns eval needs (the index is the catalogue; unit score files are only a work area)
ROW_COLUMNS = ["person_id", "garment_id", "category", "paired", "flag", "output_key"]
LABEL_SCALE = 25  # the render writes debug label maps as label × 25
LABEL_CLASSES = 10


def read_rows(job_url: str) -> list[dict]:
    """The catalogue's rows (its index, only the needed columns, parts read in parallel)."""
    from infra.jobfolder import JobFolder

    return JobFolder(job_url).read_index(columns=ROW_COLUMNS).to_pylist()


def shard_images(shards_url: str, wanted: set[str], parsing: bool) -> dict[str, dict[str, bytes]]:
    """``{person_id: {"image": png, "parsing": png}}`` for the wanted persons (PNG bytes kept
    compressed; decoded per batch)."""
    from infra.shards import ShardSet

    shards = ShardSet(shards_url)
    cols = ["person_id", "image_png"] + (["parsing_png"] if parsing else [])
    out: dict[str, dict[str, bytes]] = {}
    for key in shards.parts("persons"):
        d = shards.read_part(key, cols).to_pydict()
        for i, pid in enumerate(d["person_id"]):
            if pid in wanted:
                out[pid] = {"image": d["image_png"][i],
                            "parsing": d["parsing_png"][i] if parsing else b""}
    return out


def rgb_tensor(data: bytes):
    """A photo or a render → ``3×H×W`` float tensor in [0, 1]."""
    import torch

    from gpvton_core.rows import decode_rgb

    return torch.from_numpy(decode_rgb(data).copy()).permute(2, 0, 1).float().div_(255.0)


def decode_render_label(arr):
    """The render's debug label map stores ``label × 25``; plain label maps pass unchanged."""
    import numpy as np

    if arr.max() >= LABEL_CLASSES and not np.any(arr % LABEL_SCALE):
        return arr // LABEL_SCALE
    return arr


def render_labels(data: bytes):
    """A render's debug label PNG → ``H×W`` labels 0..9."""
    from gpvton_core.rows import decode_labels

    return decode_render_label(decode_labels(data))


def label_keys(output_key: str) -> list[str]:
    """Where the label map of a render may be: ``debug/…label.png``, then next to the render."""
    stem = output_key.rsplit(".", 1)[0]
    keys = [stem + ".label.png"]
    if stem.startswith("renders/"):
        keys.insert(0, "debug/" + stem[len("renders/"):] + ".label.png")
    return keys


def batches(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def stack_same_size(tensors: list) -> Iterator[tuple[list[int], Any]]:
    """Stack runs of equally sized tensors: yields (indices, stacked)."""
    import torch

    run: list[int] = []
    for i, t in enumerate(tensors):
        if run and tensors[run[0]].shape != t.shape:
            yield run, torch.stack([tensors[j] for j in run])
            run = []
        run.append(i)
    if run:
        yield run, torch.stack([tensors[j] for j in run])
