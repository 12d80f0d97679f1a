"""A training run's files under OUT (local folder or ``s3://``), written by rank 0::

    OUT/checkpoints/step-NNNNNNNN/{model.safetensors, disc.safetensors, state.pt}
    OUT/checkpoints/latest.json        {"step": N, "dir": "checkpoints/step-NNNNNNNN"}
    OUT/{warp|generator|parser}.safetensors    final weights (what ``gpvton render`` loads)
    OUT/log.csv, OUT/log.jsonl         one row per step: every loss term, lr, seconds
    OUT/loss_curve.png                 total loss per step

Weights are the core's one safetensors format (:mod:`gpvton_core.checkpoints`), so render, training
and resume read every checkpoint with the same reader. ``state.pt`` holds the optimiser states, the
torch RNG state and the step; ``latest.json`` is written last, so a checkpoint is complete once it is
named there.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from typing import Any, Mapping, Optional

import torch
from torch import nn

from gpvton_core.checkpoints import CheckpointError, load_safetensors_bytes, model_kind, safetensors_bytes
from infra.storage import Storage

from .plots import plot_curve

log = logging.getLogger(__name__)

LATEST = "checkpoints/latest.json"


def checkpoint_bytes(net: nn.Module, meta: Mapping[str, Any]) -> bytes:
    """``net`` in the core's format; networks other than a warp or generator (the discriminator,
    the parser) are named by ``meta["kind"]``."""
    try:
        kind = model_kind(getattr(net, "module", net))
    except CheckpointError:
        kind = str(meta.get("kind") or type(net).__name__)
    return safetensors_bytes(net, meta, kind)


class RunFiles:
    """A run's checkpoints and logs under ``out``; only rank 0 writes.

    ``rows`` is the loss log, one dict per step; :meth:`resume` trims it to the checkpoint's step.
    """

    def __init__(self, out: Storage, rank: int) -> None:
        self.out, self.rank = out, rank
        self.rows: list[dict] = []

    def resume(self, models: Mapping[str, Optional[nn.Module]]) -> Optional[dict]:
        """Load the latest checkpoint into ``models`` (name → module or None) and restore torch's RNG;
        its ``state.pt`` (optimisers, ``torch_rng``, ``step``), or None when there is nothing to resume."""
        if not self.out.exists(LATEST):
            return None
        d = self.out.read_json(LATEST)["dir"]
        for name, m in models.items():
            key = f"{d}/{name}.safetensors"
            if m is not None and (name == "model" or self.out.exists(key)):
                m.load_state_dict(load_safetensors_bytes(self.out.read_bytes(key))[0])
        state = torch.load(io.BytesIO(self.out.read_bytes(f"{d}/state.pt")), map_location="cpu", weights_only=True)
        torch.set_rng_state(state["torch_rng"])
        start = int(state["step"])
        if self.out.exists("log.jsonl"):
            rows = [json.loads(l) for l in self.out.read_bytes("log.jsonl").decode().splitlines() if l.strip()]
            self.rows[:] = [r for r in rows if r["step"] <= start]
        if self.rank == 0:
            log.info("resuming from %s (step %d)", d, start)
        return state

    def has_checkpoint(self) -> bool:
        return self.out.exists(LATEST)

    def save(self, step: int, models: Mapping[str, tuple[nn.Module, dict]], state: dict) -> None:
        """``checkpoints/step-N/{name}.safetensors`` per model, ``state.pt`` (+ torch RNG and step),
        the logs, then ``latest.json`` last."""
        if self.rank != 0:
            return
        d = f"checkpoints/step-{step:08d}"
        for name, (m, meta) in models.items():
            self.out.write_bytes(f"{d}/{name}.safetensors", checkpoint_bytes(m, meta))
        buf = io.BytesIO()
        torch.save({**state, "torch_rng": torch.get_rng_state(), "step": step}, buf)
        self.out.write_bytes(f"{d}/state.pt", buf.getvalue())
        self.write_logs()
        self.out.write_json(LATEST, {"step": step, "dir": d})

    def write_logs(self) -> None:
        if self.rank != 0:
            return
        self.out.write_bytes("log.jsonl", "".join(json.dumps(r) + "\n" for r in self.rows).encode())
        if self.rows:
            s = io.StringIO()
            wr = csv.DictWriter(s, fieldnames=list(self.rows[0].keys()), extrasaction="ignore")
            wr.writeheader()
            wr.writerows(self.rows)
            self.out.write_bytes("log.csv", s.getvalue().encode())

    def finish(self, name: str, net: nn.Module, meta: dict, stage: str) -> None:
        """The final weights (``name``), the logs and ``loss_curve.png``."""
        if self.rank != 0:
            return
        self.out.write_bytes(name, checkpoint_bytes(net, meta))
        self.write_logs()
        try:
            self.out.write_bytes("loss_curve.png", plot_curve(self.rows, stage))
        except Exception as exc:  # noqa: BLE001 - a plot must not fail a finished run
            log.warning("loss curve not written: %s", exc)
