"""One unit of pairs in; try-on images, one scores Parquet and a done marker out.

:class:`UnitProcessor` is the whole job of a worker and runs the same in process (``runner:
local``) and inside a Ray actor (:class:`workers.render.actor.RenderActor`). Per unit it

1. reads and decodes only the unit's persons and garments (:mod:`workers.render.inputs`);
2. encodes every garment and every person of the unit once (:mod:`workers.render.encoding`);
3. runs the pairs in batches and scores them on the device (:mod:`workers.render.batches`);
4. hands the images to the writer threads (:mod:`workers.render.images`);
5. writes ``JOB/scores/unit-NNNNN.parquet`` once every image is stored, then its ``.done`` marker.

A failing pair (unreadable row, non-finite output, exception) becomes an ``error`` row; the unit
always completes. Fault injection for tests lives in :mod:`infra.failpoints` (inert unless a test
arms it).
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future
from typing import Any, Optional

from infra import failpoints
from infra.jobfolder import unit_counts, unit_key
from workers.render.batches import PairRunner, unit_tensors
from workers.render.encoding import UnitEncoder
from workers.render.images import ImageWriter, OriginalFrame, OriginalPhotos
from workers.render.inputs import UnitInputs
from workers.render.models import build_models
from workers.render.score_rows import Pair, UnitPlan, mark_write_failed, scores_parquet
from workers.render.settings import WorkerSettings, job_storage, writer_threads

Row = dict[str, Any]


class UnitProcessor:
    """Processes whole units; holds the networks, the shard reader and the per-worker caches.

    Units may run on two threads (a Ray actor with max_concurrency 2): one reads and decodes the
    next unit while the other computes; the networks and their caches take one unit at a time.
    """

    def __init__(self, settings: WorkerSettings | dict):
        import torch

        self.s = settings if isinstance(settings, WorkerSettings) else WorkerSettings(**settings)
        if self.s.num_threads:
            torch.set_num_threads(self.s.num_threads)
        self.device = torch.device(self.s.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = self.s.cudnn_benchmark
        self.fixed_shapes = self.s.fixed_shapes or self.s.compile != "off"
        self.pipe = self._pipeline()
        self.precision = {k: v for k, v in self.pipe.precision_info().items() if k in ("requested", "resolved", "reason")}
        self.thresholds = self._thresholds()
        self.storage = job_storage(self.s.job_root, self.s.s3)
        self.inputs = UnitInputs(self.s)
        self.encoder = UnitEncoder(self.pipe, self.s.batch_size, self.s.cache_items)
        self.pairs = PairRunner(self.pipe, self.s, self.device, self.fixed_shapes)
        self.images = ImageWriter(self.storage, self.s.image_format, self.s.quality,
                                  writer_threads(self.s.writer_threads))
        self.photos = OriginalPhotos(self.storage.s3)
        self._prep_lock = threading.Lock()
        self._compute_lock = threading.Lock()

    def _pipeline(self) -> Any:
        """The :class:`~gpvton_core.inference.TryOnPipeline` at the shard (render) size; the 1024 path
        (warp at half resolution) follows from that size."""
        from gpvton_core.inference import TryOnPipeline

        warp, gen = build_models(self.s)
        mode = self.s.compile
        if mode != "off" and self.s.compile_cache_dir:   # compiled kernels kept for later actors and runs
            from infra.caches import use_inductor_cache

            use_inductor_cache(self.s.compile_cache_dir)
        return TryOnPipeline(warp, gen, resolution=tuple(self.s.shard_size), device=self.device,
                             precision=self.s.precision,
                             compile=False if mode == "off" else (True if mode == "default" else mode))

    def _thresholds(self) -> dict[str, Any]:
        from gpvton_core.scores import DEFAULT_THRESHOLDS, Threshold

        out = dict(DEFAULT_THRESHOLDS)
        for k, v in (self.s.thresholds or {}).items():
            out[k] = Threshold(**v)
        return out

    def process_unit(self, unit: dict[str, Any]) -> dict[str, Any]:
        """Render one unit; returns its summary (counts, seconds). Writes scores + marker last.

        Three phases: read and decode the inputs, compute (encoders, pairs, scores; images go to
        the writer threads), then wait for the images and write the scores file and the marker.
        Two units may run at once on two threads: the first phase of one overlaps the compute of
        the other, and the compute phase takes one unit at a time.
        """
        t0 = time.time()
        failpoints.unit_start(int(unit["unit_id"]))
        plan = UnitPlan.of(unit)
        queued = time.time()
        with self._prep_lock:
            prep = [time.time()]
            persons, garments = self._read_inputs(plan)
            prep.append(time.time())
        waited = prep[0] - queued
        rows: list[Row] = []
        good = self._screen_inputs(plan, persons, garments, rows)
        queued = time.time()
        with self._compute_lock:   # one unit at a time on the networks (the device)
            compute = [time.time()]
            warm_before = dict(self.pipe.warmup)
            writes = self._compute(plan, good, persons, garments, rows)
            compute.append(time.time())
            warm = {k: v for k, v in self.pipe.warmup.items() if k not in warm_before}
        waited += compute[0] - queued
        self._await_writes(writes)   # every image is stored before the scores file and the marker
        key = unit_key(plan.unit_id)
        self.storage.write_bytes(key, scores_parquet(plan, rows))
        summary = self._summary(plan, rows, time.time() - t0 - waited, warm, {"prep": prep, "compute": compute})
        self.storage.mark_done(key, summary)
        return summary

    def _read_inputs(self, plan: UnitPlan) -> tuple[dict[str, Any], dict[str, Any]]:
        files = plan.files
        persons = self.inputs.load("person", plan.person_ids, plan.category, files.get("persons", {}))
        garments = self.inputs.load("garment", plan.garment_ids, plan.category, files.get("garments", {}))
        return persons, garments

    @staticmethod
    def _screen_inputs(plan: UnitPlan, persons: dict[str, Any], garments: dict[str, Any],
                       rows: list[Row]) -> list[Pair]:
        """The pairs whose person and garment decoded; the others become error rows in ``rows``."""
        good = []
        for p, g in plan.pairs:
            bad = [x for x in (persons.get(p), garments.get(g)) if isinstance(x, Exception)]
            if p not in persons or g not in garments:
                rows.append(plan.error_row(p, g, "item missing from the unit's inputs"))
            elif bad:
                rows.append(plan.error_row(p, g, f"bad input row: {type(bad[0]).__name__}: {bad[0]}"))
            else:
                good.append((p, g))
        return good

    def _compute(self, plan: UnitPlan, good: list[Pair], persons: dict[str, Any], garments: dict[str, Any],
                 rows: list[Row]) -> list[tuple[Future, Row]]:
        """Encode, run the pairs in batches, score them and hand the images to the writer threads;
        appends a row per pair to ``rows`` and returns (pending write, row) for the written ones."""
        good, pfeat, gfeat = self.encoder.encode_unit(plan, good, persons, garments, rows)
        tensors = unit_tensors(good, persons, pfeat, gfeat, self.device) if good else None
        writes: list[tuple[Future, Row]] = []

        def finish(batch: list[Pair], res: dict[str, Any], per_pair: float) -> None:
            self._finish_batch(plan, batch, res, per_pair, rows, writes)

        self.pairs.run(plan, good, tensors, finish, rows)
        return writes

    def _finish_batch(self, plan: UnitPlan, batch: list[Pair], res: dict[str, Any], per_pair: float,
                      rows: list[Row], writes: list[tuple[Future, Row]]) -> None:
        """Rows and image writes of one finished batch (host tensors from :meth:`PairRunner.launch`)."""
        from gpvton_core.scores import SCORE_NAMES, judge

        scores = res["scores"].tolist()
        finite = res["finite"].tolist()
        for j, (p, g) in enumerate(batch):
            if not finite[j]:
                rows.append(plan.error_row(p, g, "non-finite values in the try-on output"))
                continue
            version = plan.versions.get((p, g), "")
            key = self.images.output_key(plan.category, p, g, version=version)
            original = None
            if self.s.frame == "original":
                try:
                    original = self._original_frame(p, res["alpha"], j)
                except Exception as exc:  # noqa: BLE001 - the photo moved or cannot be decoded
                    rows.append(plan.error_row(p, g, f"original photo unreadable for frame 'original': "
                                                     f"{type(exc).__name__}: {exc}"))
                    continue
            # encode + write on the writer threads: overlaps the next batch's compute
            fut = self.images.submit(key, plan.category, p, g, res["tryon"][j],
                                     res["cloth"][j] if self.s.debug else None,
                                     res["label"][j] if self.s.debug else None, original, version)
            sc = dict(zip(SCORE_NAMES, scores[j]))
            verdict = judge(sc, self.thresholds)
            row = plan.scored_row(p, g, sc, verdict.flag, verdict.reason, self.storage.url(key), key, per_pair)
            rows.append(row)
            writes.append((fut, row))

    def _original_frame(self, person_id: str, alpha: Optional[Any], j: int) -> OriginalFrame:
        uri, box = self.inputs.photo_source(person_id)
        return self.photos.get(person_id, uri), box, None if alpha is None else alpha[j]

    @staticmethod
    def _await_writes(writes: list[tuple[Future, Row]]) -> None:
        for fut, row in writes:
            try:
                fut.result()
            except Exception as exc:  # noqa: BLE001 - storage failed after its retries
                mark_write_failed(row, exc)

    def _summary(self, plan: UnitPlan, rows: list[Row], seconds: float, warm: dict[str, float],
                 phases: dict[str, list[float]]) -> dict[str, Any]:
        """The done-marker's content: counts, timings, precision, compilation, phases (epoch seconds)."""
        return {"unit_id": plan.unit_id, "pairs": len(rows),
                **unit_counts([r["flag"] for r in rows], [r["error"] for r in rows]),
                "seconds": seconds, "model_seconds": float(sum(r["seconds"] or 0 for r in rows)), "pid": os.getpid(),
                "storage_failures_injected": failpoints.storage_failures_injected(),
                "precision": self.precision,
                # first calls of new compiled shapes in this unit (compilation): steady pairs/s leaves them out
                "compile": {"mode": self.s.compile, "fixed_shapes": self.fixed_shapes,
                            "compile_s": float(sum(warm.values())), "shapes": warm},
                "phases": phases}
