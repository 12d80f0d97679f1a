"""A unit's pairs on the networks: batches of ``batch_size``, one queued on the device while the last finishes.

``TryOnPipeline.run_pairs`` runs a batch (warp decode → assembly → generator), the composite and
the scores (:mod:`gpvton_core.scores`) follow on the device, and the results come back through
pinned memory (:func:`gpvton_core.transfer.copy_to_host`), so the host launches batch n+1 before it
waits for batch n. A failing batch is retried pair by pair, so one bad pair does not take its
batch with it; a pair that still fails becomes an error row.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Optional

from infra import failpoints
from workers.render import images
from workers.render.score_rows import Pair, UnitPlan
from workers.render.settings import WorkerSettings

log = logging.getLogger(__name__)

# (the batch's pairs, its host tensors, model seconds per pair) → its rows and image writes
FinishBatch = Callable[[list[Pair], dict[str, Any], float], None]


@dataclass
class UnitTensors:
    """The unit's encoded persons / garments as one batch each, with id → row maps (on the device)."""

    persons: Any                 # PersonBatch
    garments: Any                # GarmentBatch
    person_row: dict[str, int]
    garment_row: dict[str, int]
    targets: Any                 # the persons' scoring targets
    background: Any              # the persons' background masks (paste-back)


def unit_tensors(good: list[Pair], persons: dict[str, Any], pfeat: dict[str, Any], gfeat: dict[str, Any],
                 device: Any) -> UnitTensors:
    import torch

    from gpvton_core.tryon_batches import GarmentBatch, PersonBatch, to_device

    pids = sorted({p for p, _ in good})
    gids = sorted({g for _, g in good})
    return UnitTensors(persons=PersonBatch.cat([pfeat[p] for p in pids]),
                       garments=GarmentBatch.cat([gfeat[g] for g in gids]),
                       person_row={p: n for n, p in enumerate(pids)}, garment_row={g: n for n, g in enumerate(gids)},
                       targets=to_device(torch.cat([persons[p].targets for p in pids]), device),
                       background=to_device(torch.cat([persons[p].background for p in pids]), device))


class PairRunner:
    """Runs a unit's good pairs through the pipeline in batches and hands each finished batch on."""

    def __init__(self, pipe: Any, settings: WorkerSettings, device: Any, fixed_shapes: bool):
        self.pipe = pipe
        self.s = settings
        self.device = device
        self.fixed_shapes = fixed_shapes
        self._nan_pairs = failpoints.nan_pairs()

    def run(self, plan: UnitPlan, good: list[Pair], ut: Optional[UnitTensors], finish: FinishBatch,
            rows: list[dict[str, Any]]) -> None:
        """Every pair of ``good`` ends in ``finish`` or as an error row in ``rows``."""
        bs = max(1, self.s.batch_size)
        batches = deque(good[i:i + bs] for i in range(0, len(good), bs))
        # one batch in flight: batch n+1 is queued on the device before batch n's results are awaited
        inflight: Optional[tuple[list[Pair], Any]] = None
        last = time.time()
        while batches or inflight is not None:
            launched = None
            if batches:
                batch = batches.popleft()
                try:
                    launched = (batch, self.launch(batch, ut, plan))
                except Exception as exc:  # noqa: BLE001
                    if len(batch) > 1:  # isolate the failing pair(s)
                        log.warning("unit %d: batch of %d failed (%s); retrying pair by pair", plan.unit_id,
                                    len(batch), exc)
                        batches.extendleft([[x] for x in reversed(batch)])
                    else:
                        rows.append(plan.error_row(*batch[0], f"{type(exc).__name__}: {exc}\n"
                                                              f"{traceback.format_exc(limit=3)}"))
                    continue
            if inflight is not None:
                done, inflight = inflight, None
                res = done[1].wait()
                now = time.time()
                finish(done[0], res, (now - last) / len(done[0]))
                last = now
            inflight = launched

    def launch(self, pairs: list[Pair], ut: UnitTensors, plan: UnitPlan) -> Any:
        """Queue B pairs on the device; returns a :class:`~gpvton_core.transfer.HostCopy` whose
        ``wait()`` gives host tensors: tryon, cloth, label, alpha and the scores (B×4, SCORE_NAMES).

        Nothing here waits for the device: indices go up through pinned memory and the results
        come down the same way. With fixed shapes the networks always see ``batch_size`` pairs
        (padding dropped in the pipeline).
        """
        import torch

        from gpvton_core.tryon_batches import to_device
        from gpvton_core.scores import SCORE_NAMES, compute_scores
        from gpvton_core.transfer import copy_to_host

        pi_h = [ut.person_row[p] for p, _ in pairs]
        gi_h = [ut.garment_row[g] for _, g in pairs]
        gb, pb = ut.garments, ut.persons
        bs = max(1, self.s.batch_size) if self.fixed_shapes else len(pairs)
        out = self.pipe.run_pairs(gb, pb, gi_h, pi_h, batch_size=bs, fixed_shapes=self.fixed_shapes)
        pi, gi = to_device(torch.tensor(pi_h), self.device), to_device(torch.tensor(gi_h), self.device)
        tryon = out.tryon.float()
        person = pb.inputs  # float32 on the device
        alpha = None
        with torch.inference_mode():
            if self.s.composite == "paste-back":
                tryon, alpha = images.paste_back(tryon, person.image.index_select(0, pi), out,
                                                 ut.background.index_select(0, pi), gb.part_cls.index_select(0, gi))
            for j, pair in enumerate(pairs):
                if pair in self._nan_pairs:  # failpoint nan_pairs (tests)
                    tryon[j] = float("nan")
            scores = compute_scores(
                tryon=torch.nan_to_num(tryon), photo=person.image.index_select(0, pi), preserve_gen=out.preserve_gen,
                part_warped=out.warped_part_masks, seg=out.seg[:, 0], classes=gb.part_cls.index_select(0, gi),
                preserve_warp=person.preserve_warp.index_select(0, pi), label=out.warped_label[:, 0],
                targets=ut.targets.index_select(0, pi),
                paired=to_device(torch.tensor([plan.paired(p, g) for p, g in pairs]), self.device), to_cpu=False)
            finite = torch.isfinite(tryon).flatten(1).all(1)
        debug = self.s.debug   # the warped garment and label are written only as debug outputs
        return copy_to_host({"tryon": tryon, "cloth": out.warped_cloth.float() if debug else None,
                             "label": out.warped_label[:, 0] if debug else None,
                             "alpha": None if alpha is None else alpha[:, 0],
                             "scores": torch.stack([scores[k] for k in SCORE_NAMES], 1), "finite": finite})
