"""The render worker: one unit of pairs in, try-on images + one scores Parquet + a done marker out.

:class:`UnitProcessor` is the whole job of a worker and runs the same in process
(``runner: local``) and inside a Ray actor (``runner: ray``). Per unit it

1. loads only the unit's persons and garments from the shards (rows located through the
   part files the planner attached to the unit; decoded inputs cached per worker, LRU);
2. encodes every garment and every person of the unit once with
   :class:`gpvton_core.inference.TryOnPipeline` (encoded rows cached per worker);
3. runs the unit's pairs through ``TryOnPipeline.run_pairs`` in batches of ``batch_size`` (warp
   decode → assembly → generator → composition), computes the scores
   (:mod:`gpvton_core.scores`) on the device from its outputs;
4. writes ``JOB/renders/CATEGORY/PERSON/GARMENT.EXT`` (ids through ``sanitize_id``; keys are
   checked to stay under the job root), optional debug images under ``JOB/debug/``;
5. writes ``JOB/scores/unit-NNNNN.parquet`` and then its ``.done`` marker.

Every write goes through :class:`infra.storage.Storage` (atomic, retried with exponential
backoff). A failing pair (unreadable row, non-finite output, exception) becomes an ``error``
row; a failing batch is retried pair by pair so one bad pair does not take its batch with it;
the unit always completes. Fault injection for tests lives in :mod:`infra.failpoints` (inert
unless a test arms it).

In a Ray actor (:class:`RenderActor`) the worker's log records go to
``JOB/logs/worker-NN-pPID.log`` (rewritten after every unit, so object stores work too), not only
to Ray's session folder, which goes away with the cluster.

Why Ray core actors and not Ray Data ``map_batches``
----------------------------------------------------
The work is already partitioned by the planner into units whose pairs share garments and
persons, and each unit must produce exactly one Parquet file + marker (resumability). A fixed
pool of core actors (:class:`RayPool`) maps onto that directly: one actor per GPU (or a
fractional CPU share), each holding the two networks and its feature caches; the driver keeps
at most ``in_flight_per_actor`` units queued per actor (backpressure: nothing is read before an
actor is about to need it, object store stays empty — actors read the shards themselves); an
actor process that dies is restarted by Ray (``max_restarts``) and its unit re-executed
(``max_task_retries``) — the constructor takes only small plain data (settings, worker number)
inlined in the actor's creation task, so a restart never depends on the object store; a unit
that still fails is reported and left without a marker, so the next run picks it up. Ray Data would add a read stage whose blocks must go through the object
store, a repartition step to spread few large blocks, and the 2-core scheduling deadlock noted in
ENVIRONMENT.md, for no gain on this access pattern.
"""

from __future__ import annotations

import io
import logging
import math
import os
import threading
import time
import traceback
from collections import OrderedDict, deque
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from infra import failpoints
from infra.jobfolder import unit_counts, unit_key

log = logging.getLogger(__name__)


@dataclass
class WorkerSettings:
    """Everything a worker needs, plain data (pickled into Ray actors)."""

    job_root: str
    shards_root: str
    variant: str
    resolution: int                      # the render (generator) height; shards are at this size
    shard_size: tuple[int, int]          # (H, W) of the shard images
    batch_size: int = 4
    image_format: str = "jpg"
    quality: int = 92
    debug: bool = False
    composite: str = "paste-back"        # or "official" (every pixel from the generator)
    frame: str = "working"               # or "original" (back into the original photo)
    device: str = "cpu"
    precision: str = "fp32"
    warp_checkpoint: Optional[str] = None
    generator_checkpoint: Optional[str] = None
    width: float = 1.0
    seed: int = 0
    thresholds: dict[str, dict[str, float]] = field(default_factory=dict)
    s3: dict[str, Optional[str]] = field(default_factory=dict)
    num_threads: int = 0                 # torch intra-op threads (0: leave torch's default)
    cudnn_benchmark: bool = False        # cuDNN autotuning per new input shape (CUDA only)
    cache_items: int = 256
    log_level: int = logging.INFO        # of the worker's log file (JOB/logs/), Ray actors only
    compile: str = "off"                 # off, or the torch.compile mode: default | reduce-overhead | …
    fixed_shapes: bool = False           # every network call at batch_size pairs (implied by compile)
    compile_cache_dir: Optional[str] = None   # TORCHINDUCTOR_CACHE_DIR (per host; None: inductor's default)
    writer_threads: int = 0              # image encode + write threads (0: the host's cores, 4..16)


def writer_threads(requested: int = 0) -> int:
    """Threads that encode and write images: JPEG encoding releases the GIL, so one per core."""
    if requested > 0:
        return requested
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:   # not Linux
        cores = os.cpu_count() or 4
    return max(4, min(16, cores))


# --- storage and shard access ---------------------------------------------------------------

def make_storage(root: str, s3: dict[str, Optional[str]]):
    from infra.storage import S3Settings, Storage

    st = Storage(root, S3Settings(**s3) if s3 else None)
    st.fs = failpoints.wrap_filesystem(st.fs)
    return st


def decode_png(data: bytes, mode: Optional[str] = None) -> np.ndarray:
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    img.load()
    if mode is not None and img.mode != mode:
        img = img.convert(mode)
    return np.asarray(img)


class ShardReader:
    """Reads chosen rows of the persons / garments shards (fsspec; retried)."""

    def __init__(self, shards_root: str, s3: dict[str, Optional[str]]):
        from infra.shards import ShardSet
        from infra.storage import S3Settings

        self.shards = ShardSet(shards_root, S3Settings(**s3) if s3 else None)
        self.root = self.shards.root

    def read(self, table: str, ids: list[str], files: dict[str, str]) -> dict[str, dict[str, Any]]:
        """Rows of ``ids``; ``files`` maps each id to its part file (``persons/part-00000.parquet``)."""
        key = "person_id" if table == "persons" else "garment_id"
        by_file: dict[str, list[str]] = {}
        for i in ids:
            f = files.get(i)
            if f is not None:
                by_file.setdefault(f, []).append(i)
        rows: dict[str, dict[str, Any]] = {}
        for f, wanted in sorted(by_file.items()):
            tbl = self.shards.read_part(f, filters=[(key, "in", wanted)])   # retried inside
            for r in tbl.to_pylist():
                rows[r[key]] = r
        return rows


# --- models ---------------------------------------------------------------------------------

def _model_file(path: str, s3: Optional[dict] = None):
    """The checkpoint at ``path`` (local or any fsspec URL) on local disk: fetched once per worker
    into the sha256-keyed cache of :mod:`infra.models`, the one way every model file is read."""
    from infra.models import fetch_model
    from infra.storage import S3Settings

    return fetch_model(path, S3Settings(**s3) if s3 else None)


def sha256_file(path: str, s3: Optional[dict] = None) -> str:
    """The checkpoint's sha256 (``job.json``, the job fingerprint)."""
    return _model_file(path, s3).sha256


def load_checkpoint(path: str, s3: Optional[dict] = None):
    """(network, meta) from a checkpoint URL: an official ``.pth`` (kind told by its keys) or our safetensors."""
    from gpvton_core.checkpoints import build_from_checkpoint

    return build_from_checkpoint(_model_file(path, s3).path)


def _meta_width(meta: dict, default: float) -> float:
    for key in ("width", "model_width"):
        if key in meta:
            return float(meta[key])
    cfg = meta.get("config") or meta.get("model") or {}
    if isinstance(cfg, dict) and "width" in cfg:
        return float(cfg["width"])
    return default


def build_models(s: WorkerSettings):
    """(warp, generator) in eval mode on ``s.device``, float32."""
    import torch

    from gpvton_core.generator import TryOnGenerator
    from gpvton_core.warp import LFGPWarp

    torch.manual_seed(s.seed)  # random-init networks must be identical in every worker
    nets = []
    for kind, path in (("warp", s.warp_checkpoint), ("generator", s.generator_checkpoint)):
        if path:
            net, meta = load_checkpoint(path, s.s3)
            want = "generator" if kind == "generator" else f"warp_{s.variant}"
            if meta.get("kind") != want:
                raise ValueError(f"{kind} checkpoint {path} holds a {meta.get('kind')!r} network, expected {want!r}")
        else:
            net = LFGPWarp(s.variant, s.width) if kind == "warp" else TryOnGenerator(s.width)
        nets.append(net)
    # float32 here: TryOnPipeline puts each convolution group in its dtype (gpvton_core.precision)
    return tuple(n.eval().to(device=s.device, dtype=torch.float32) for n in nets)


# --- the unit processor -----------------------------------------------------------------------

class UnitProcessor:
    """Process whole units; holds the networks, the shard reader and the per-worker caches."""

    def __init__(self, settings: WorkerSettings | dict):
        import torch

        self.s = settings if isinstance(settings, WorkerSettings) else WorkerSettings(**settings)
        if self.s.num_threads:
            torch.set_num_threads(self.s.num_threads)
        from gpvton_core.inference import TryOnPipeline

        self.device = torch.device(self.s.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = self.s.cudnn_benchmark
        warp, gen = build_models(self.s)
        # the 1024 path (warp at half resolution) follows from the shard (render) size
        mode = self.s.compile
        if mode != "off" and self.s.compile_cache_dir:   # compiled kernels kept for later actors and runs
            from infra.caches import use_inductor_cache

            use_inductor_cache(self.s.compile_cache_dir)
        self.fixed_shapes = self.s.fixed_shapes or mode != "off"
        self.pipe = TryOnPipeline(warp, gen, resolution=tuple(self.s.shard_size), device=self.device,
                                  precision=self.s.precision,
                                  compile=False if mode == "off" else (True if mode == "default" else mode))
        self.precision = {k: v for k, v in self.pipe.precision_info().items() if k in ("requested", "resolved", "reason")}
        self.reader = ShardReader(self.s.shards_root, self.s.s3)
        self.storage = make_storage(self.s.job_root, self.s.s3)
        from gpvton_core.scores import DEFAULT_THRESHOLDS, Threshold

        self.thresholds = dict(DEFAULT_THRESHOLDS)
        for k, v in (self.s.thresholds or {}).items():
            self.thresholds[k] = Threshold(**v)
        self._inputs: OrderedDict[tuple, Any] = OrderedDict()   # (kind, id, category) → inputs | Exception
        self._feats: OrderedDict[tuple, Any] = OrderedDict()    # (kind, id, category) → encoded row
        self._photo_meta: dict[str, tuple[str, Optional[list[int]]]] = {}   # person → (source_uri, frame_box)
        self._photos: OrderedDict[str, np.ndarray] = OrderedDict()          # person → original photo (few)
        self._nan_pairs = failpoints.nan_pairs()
        self.units_done = 0
        from concurrent.futures import ThreadPoolExecutor

        self._writer = ThreadPoolExecutor(max_workers=writer_threads(self.s.writer_threads),
                                          thread_name_prefix="gpvton-write")
        # Units may run on two threads (a Ray actor with max_concurrency 2): one reads and decodes
        # the next unit while the other computes; the networks and their caches take one at a time.
        self._prep_lock = threading.Lock()
        self._compute_lock = threading.Lock()

    # -- caches --
    def _cache_put(self, cache: OrderedDict, key: tuple, value: Any) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > self.s.cache_items:
            cache.popitem(last=False)

    def _load_inputs(self, kind: str, ids: list[str], category: str, files: dict[str, str]) -> dict[str, Any]:
        from gpvton_core.inputs import garment_inputs, person_inputs

        out: dict[str, Any] = {}
        missing = []
        for i in ids:
            key = (kind, i, category)
            if key in self._inputs:
                self._inputs.move_to_end(key)
                out[i] = self._inputs[key]
            else:
                missing.append(i)
        if missing:
            rows = self.reader.read("persons" if kind == "person" else "garments", missing, files)
            h, w = self.s.shard_size
            for i in missing:
                r = rows.get(i)
                try:
                    if r is None:
                        raise KeyError(f"{kind} {i!r} not found in the shards")
                    if (r["height"], r["width"]) != (h, w):
                        raise ValueError(f"{kind} {i}: shard size {r['height']}×{r['width']} != {h}×{w}")
                    if kind == "person":
                        self._photo_meta[i] = (r.get("source_uri"), r.get("frame_box"))
                        val = person_inputs(
                            i, decode_png(r["image_png"], "RGB"), decode_png(r["parsing_png"], "L"),
                            decode_png(r["densepose_png"], "L"), np.asarray(r["keypoints"], np.float32),
                            category, self.s.variant)
                    else:
                        val = garment_inputs(
                            i, decode_png(r["image_png"], "RGB"), decode_png(r["mask_png"], "L"),
                            decode_png(r["parts_png"], "L"), category, self.s.variant)
                except Exception as exc:  # noqa: BLE001 - a bad row becomes error rows
                    val = exc
                out[i] = val
                self._cache_put(self._inputs, (kind, i, category), val)
        return out

    # -- model --
    def _encode(self, kind: str, items: dict[str, Any], category: str) -> dict[str, Any]:
        """Encoded one-row ``GarmentBatch`` / ``PersonBatch`` per id (encoded in chunks, cached)."""
        from gpvton_core.inference import GarmentInputs, PersonInputs

        feats: dict[str, Any] = {}
        todo = []
        for i, v in items.items():
            key = (kind, i, category)
            if key in self._feats:
                self._feats.move_to_end(key)
                feats[i] = self._feats[key]
            elif not isinstance(v, Exception):
                todo.append(i)
        bs = max(1, self.s.batch_size)
        for start in range(0, len(todo), bs):
            chunk = todo[start:start + bs]
            if kind == "garment":
                enc = self.pipe.encode_garments(GarmentInputs.cat([items[i] for i in chunk]))
            else:
                enc = self.pipe.encode_persons(PersonInputs.cat([items[i].inputs for i in chunk]))
            for j, i in enumerate(chunk):
                fi = enc.select([j])
                feats[i] = fi
                self._cache_put(self._feats, (kind, i, category), fi)
        return feats

    def _unit_batches(self, good: list[tuple[str, str]], persons: dict, pfeat: dict, gfeat: dict) -> dict[str, Any]:
        """The unit's encoded persons / garments as one batch each, with id → row maps."""
        import torch

        from gpvton_core.inference import GarmentBatch, PersonBatch, to_device

        pids = sorted({p for p, _ in good})
        gids = sorted({g for _, g in good})
        return {"pb": PersonBatch.cat([pfeat[p] for p in pids]), "gb": GarmentBatch.cat([gfeat[g] for g in gids]),
                "ppos": {p: n for n, p in enumerate(pids)}, "gpos": {g: n for n, g in enumerate(gids)},
                "targets": to_device(torch.cat([persons[p].targets for p in pids]), self.device),
                "background": to_device(torch.cat([persons[p].background for p in pids]), self.device)}

    def _run_batch(self, pairs: list[tuple[str, str]], ub: dict[str, Any], category: str,
                   worn: dict[str, Any]):
        """Queue B pairs on the device; returns a :class:`~gpvton_core.transfer.HostCopy` whose
        ``wait()`` gives host tensors: tryon, cloth, label, alpha and the scores (B×4, SCORE_NAMES).

        Nothing here waits for the device: indices go up through pinned memory and the results
        come down the same way, so the caller launches the next batch before it waits for this one.
        With fixed shapes the networks always see ``batch_size`` pairs (padding dropped in the pipeline).
        """
        import torch

        from gpvton_core.inference import to_device
        from gpvton_core.scores import SCORE_NAMES, compute_scores
        from gpvton_core.transfer import copy_to_host

        pi_h = [ub["ppos"][p] for p, _ in pairs]
        gi_h = [ub["gpos"][g] for _, g in pairs]
        gb, pb = ub["gb"], ub["pb"]
        bs = max(1, self.s.batch_size) if self.fixed_shapes else len(pairs)
        out = self.pipe.run_pairs(gb, pb, gi_h, pi_h, batch_size=bs, fixed_shapes=self.fixed_shapes)
        pi, gi = to_device(torch.tensor(pi_h), self.device), to_device(torch.tensor(gi_h), self.device)
        tryon = out.tryon.float()
        person = pb.inputs  # float32 on the device
        alpha = None
        with torch.inference_mode():
            if self.s.composite == "paste-back":
                tryon, alpha = self._paste_back(tryon, person.image.index_select(0, pi), out,
                                                ub["background"].index_select(0, pi), gb.part_cls.index_select(0, gi))
            for j, (p, g) in enumerate(pairs):
                if (p, g) in self._nan_pairs:  # failpoint nan_pairs (tests)
                    tryon[j] = float("nan")
            scores = compute_scores(
                tryon=torch.nan_to_num(tryon), photo=person.image.index_select(0, pi), preserve_gen=out.preserve_gen,
                part_warped=out.warped_part_masks, seg=out.seg[:, 0], classes=gb.part_cls.index_select(0, gi),
                preserve_warp=person.preserve_warp.index_select(0, pi), label=out.warped_label[:, 0],
                targets=ub["targets"].index_select(0, pi),
                paired=to_device(torch.tensor([worn.get(p) == g for p, g in pairs]), self.device), to_cpu=False)
            finite = torch.isfinite(tryon).flatten(1).all(1)
        debug = self.s.debug   # the warped garment and label are written only as debug outputs
        return copy_to_host({"tryon": tryon, "cloth": out.warped_cloth.float() if debug else None,
                             "label": out.warped_label[:, 0] if debug else None,
                             "alpha": None if alpha is None else alpha[:, 0],
                             "scores": torch.stack([scores[k] for k in SCORE_NAMES], 1), "finite": finite})

    def _paste_back(self, tryon, photo, out, background, part_cls):
        """The delivered image: the photo's own pixels where nothing may change (the generator-stage
        preserve region and the background, clear of the warped garment), feathered into the
        generated pixels; returns it in [−1, 1] and the blend weights."""
        from gpvton_core import composite as cp

        band = cp.band_width(tryon.shape[-2])
        garment = (out.warped_label == part_cls[:, :, None, None]).any(dim=1, keepdim=True).float()
        keep = cp.keep_region(out.preserve_gen.float(), background, garment, clearance=max(1, band // 2))
        alpha = cp.feather(keep, band)
        delivered = cp.paste_back((tryon + 1) / 2, (photo.float() + 1) / 2, alpha)
        return delivered * 2 - 1, alpha

    def _original(self, person_id: str) -> np.ndarray:
        """The person's original photo (RGB, EXIF orientation applied), a few cached per worker."""
        if person_id in self._photos:
            self._photos.move_to_end(person_id)
            return self._photos[person_id]
        from PIL import Image, ImageOps

        from infra.storage import filesystem, with_retries

        uri = self._photo_meta.get(person_id, (None, None))[0]
        if not uri:
            raise ValueError(f"person {person_id!r} has no source_uri in the shards")

        def read() -> bytes:
            fs = filesystem(uri, self.storage.s3)
            path = uri[len("file://"):] if uri.startswith("file://") else uri
            with fs.open(path, "rb") as fh:
                return fh.read()

        data = with_retries(read, what=f"read {uri}")
        photo = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
        self._photos[person_id] = photo
        while len(self._photos) > 8:
            self._photos.popitem(last=False)
        return photo

    # -- outputs --
    def output_key(self, category: str, person_id: str, garment_id: str, ext: Optional[str] = None,
                   prefix: str = "renders", version: str = "") -> str:
        from infra.jobfolder import render_key

        return render_key(category, person_id, garment_id, version, ext or self.s.image_format, prefix)

    def _encode_image(self, t, fmt: str) -> bytes:
        return self._encode_array((((t.clamp(-1, 1) + 1) / 2) * 255).round().byte().permute(1, 2, 0).numpy(), fmt)

    def _encode_array(self, arr: np.ndarray, fmt: str) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        img = Image.fromarray(arr)
        if fmt in ("jpg", "jpeg"):
            img.save(buf, format="JPEG", quality=self.s.quality)
        elif fmt == "webp":
            img.save(buf, format="WEBP", quality=self.s.quality)
        else:
            img.save(buf, format="PNG")
        return buf.getvalue()

    def _write_outputs(self, key: str, category: str, p: str, g: str, tryon, cloth, label,
                       original: Optional[tuple[np.ndarray, Optional[list[int]], Any]] = None,
                       version: str = "") -> None:
        if original is None:
            self.storage.write_bytes(key, self._encode_image(tryon, self.s.image_format))
        else:   # back into the original photo at its resolution (the photo's own pixels where alpha is 1)
            from gpvton_core.composite import place_in_photo

            photo, box, alpha = original
            arr = (((tryon.clamp(-1, 1) + 1) / 2) * 255).round().byte().permute(1, 2, 0).numpy()
            full = place_in_photo(arr, photo, box, None if alpha is None else alpha.numpy())
            self.storage.write_bytes(key, self._encode_array(full, self.s.image_format))
        if cloth is not None:
            self.storage.write_bytes(self.output_key(category, p, g, "warped.png", "debug", version),
                                     self._encode_image(cloth, "png"))
        if label is not None:
            self.storage.write_bytes(self.output_key(category, p, g, "label.png", "debug", version),
                                     self._label_png(label))

    def _label_png(self, label) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray((label.numpy().astype(np.uint8) * 25)).save(buf, format="PNG")
        return buf.getvalue()

    def _encode_unit(self, uid: int, category: str, good: list[tuple[str, str]], persons: dict, garments: dict,
                     rows: list[dict], error_row: Callable[..., dict]) -> tuple[list, dict, dict]:
        """(pairs still good, person features, garment features); a failed batch is retried item by
        item, and the pairs of an item that still fails become error rows."""
        try:
            pfeat = self._encode("person", {p: persons[p] for p in {p for p, _ in good}}, category)
            gfeat = self._encode("garment", {g: garments[g] for g in {g for _, g in good}}, category)
            return good, pfeat, gfeat
        except Exception as exc:  # noqa: BLE001 - encoding failed for the batch: per item
            log.warning("unit %d: batched encoding failed (%s); encoding one by one", uid, exc)
        pfeat, gfeat = {}, {}
        for kind, src, dst in (("person", persons, pfeat), ("garment", garments, gfeat)):
            for i in sorted({p for p, _ in good} if kind == "person" else {g for _, g in good}):
                try:
                    dst.update(self._encode(kind, {i: src[i]}, category))
                except Exception as e2:  # noqa: BLE001
                    src[i] = e2
        still = []
        for p, g in good:
            if p in pfeat and g in gfeat:
                still.append((p, g))
            else:
                e = persons[p] if p not in pfeat else garments[g]
                rows.append(error_row(p, g, f"encoding failed: {type(e).__name__}: {e}"))
        return still, pfeat, gfeat

    def _compute(self, uid: int, category: str, good: list[tuple[str, str]], persons: dict, garments: dict,
                 worn: dict, rows: list[dict], error_row: Callable[..., dict],
                 versions: Optional[dict[tuple[str, str], str]] = None) -> list[tuple[Any, dict]]:
        """Encode, run the pairs in batches, score them and hand the images to the writer threads;
        appends a row per pair to ``rows`` and returns (pending write, row) for the written ones."""
        good, pfeat, gfeat = self._encode_unit(uid, category, good, persons, garments, rows, error_row)
        ub = self._unit_batches(good, persons, pfeat, gfeat) if good else None
        bs = max(1, self.s.batch_size)
        batches = deque(good[i:i + bs] for i in range(0, len(good), bs))
        writes: list[tuple[Any, dict[str, Any]]] = []
        # one batch in flight: batch n+1 is queued on the device before batch n's results are awaited
        inflight: Optional[tuple[list[tuple[str, str]], Any]] = None
        last = time.time()
        while batches or inflight is not None:
            launched = None
            if batches:
                batch = batches.popleft()
                try:
                    launched = (batch, self._run_batch(batch, ub, category, worn))
                except Exception as exc:  # noqa: BLE001
                    if len(batch) > 1:  # isolate the failing pair(s)
                        log.warning("unit %d: batch of %d failed (%s); retrying pair by pair", uid, len(batch), exc)
                        batches.extendleft([[x] for x in reversed(batch)])
                    else:
                        rows.append(error_row(*batch[0], f"{type(exc).__name__}: {exc}\n"
                                                         f"{traceback.format_exc(limit=3)}"))
                    continue
            if inflight is not None:
                done, inflight = inflight, None
                res = done[1].wait()
                now = time.time()
                self._finish_batch(done[0], res, (now - last) / len(done[0]), uid, category, worn, rows, writes,
                                   error_row, versions)
                last = now
            inflight = launched
        return writes

    def _finish_batch(self, batch: list[tuple[str, str]], res: dict[str, Any], per_pair: float, uid: int,
                      category: str, worn: dict, rows: list[dict], writes: list, error_row: Callable[..., dict],
                      versions: Optional[dict[tuple[str, str], str]]) -> None:
        """Rows and image writes of one finished batch (host tensors from :meth:`_run_batch`)."""
        from gpvton_core.scores import SCORE_NAMES, judge

        scores = res["scores"].tolist()
        finite = res["finite"].tolist()
        for j, (p, g) in enumerate(batch):
            if not finite[j]:
                rows.append(error_row(p, g, "non-finite values in the try-on output"))
                continue
            version = (versions or {}).get((p, g), "")
            key = self.output_key(category, p, g, version=version)
            original = None
            if self.s.frame == "original":
                try:
                    original = (self._original(p), self._photo_meta[p][1],
                                None if res["alpha"] is None else res["alpha"][j])
                except Exception as exc:  # noqa: BLE001 - the photo moved or cannot be decoded
                    rows.append(error_row(p, g, f"original photo unreadable for frame 'original': "
                                                f"{type(exc).__name__}: {exc}"))
                    continue
            # encode + write on the writer threads: overlaps the next batch's compute
            fut = self._writer.submit(self._write_outputs, key, category, p, g, res["tryon"][j],
                                      res["cloth"][j] if self.s.debug else None,
                                      res["label"][j] if self.s.debug else None, original, version)
            sc = dict(zip(SCORE_NAMES, scores[j]))
            verdict = judge(sc, self.thresholds)
            row = dict(
                unit_id=uid, person_id=p, garment_id=g, category=category, paired=worn.get(p) == g,
                output_uri=self.storage.url(key), output_key=key,
                **{k: (None if math.isnan(v) else v) for k, v in sc.items()},
                flag=verdict.flag, reason=verdict.reason, error=None, seconds=per_pair, version=version or None)
            rows.append(row)
            writes.append((fut, row))

    def process_unit(self, unit: dict[str, Any]) -> dict[str, Any]:
        """Render one unit; returns its summary (counts, seconds). Writes scores + marker last.

        Three phases: read and decode the inputs, compute (encoders, pairs, scores; images go to
        the writer threads), then wait for the images and write the scores file and the marker.
        Two units may run at once on two threads: the first phase of one overlaps the compute of
        the other, and the compute phase takes one unit at a time.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        from infra.schema import SCORES

        t0 = time.time()
        uid = int(unit["unit_id"])
        failpoints.unit_start(uid)
        category = unit["category"]
        pairs = [(p["person_id"], p["garment_id"]) for p in unit["pairs"]]
        versions = {(p["person_id"], p["garment_id"]): p.get("version") or "" for p in unit["pairs"]}
        worn = dict(unit.get("worn") or {})
        files = unit.get("files") or {}
        queued = time.time()
        with self._prep_lock:
            prep = [time.time()]
            persons = self._load_inputs("person", list(unit["person_ids"]), category, files.get("persons", {}))
            garments = self._load_inputs("garment", list(unit["garment_ids"]), category, files.get("garments", {}))
            prep.append(time.time())
        waited = prep[0] - queued

        def error_row(p: str, g: str, err: str) -> dict[str, Any]:
            return dict(unit_id=uid, person_id=p, garment_id=g, category=category,
                        paired=worn.get(p) == g, output_uri=None, output_key=None, warp_miou=None,
                        preserve_ssim=None, ssim=None, parse_miou=None, flag="error", reason=None,
                        error=err[:2000], seconds=None, version=versions.get((p, g)) or None)

        rows: list[dict[str, Any]] = []
        good = []
        for p, g in pairs:
            bad = [x for x in (persons.get(p), garments.get(g)) if isinstance(x, Exception)]
            if p not in persons or g not in garments:
                rows.append(error_row(p, g, "item missing from the unit's inputs"))
            elif bad:
                rows.append(error_row(p, g, f"bad input row: {type(bad[0]).__name__}: {bad[0]}"))
            else:
                good.append((p, g))
        queued = time.time()
        with self._compute_lock:   # one unit at a time on the networks (the device)
            compute = [time.time()]
            warm_before = dict(self.pipe.warmup)
            writes = self._compute(uid, category, good, persons, garments, worn, rows, error_row, versions)
            compute.append(time.time())
            warm = {k: v for k, v in self.pipe.warmup.items() if k not in warm_before}
        waited += compute[0] - queued
        for fut, row in writes:  # every image is stored before the scores file and the marker
            try:
                fut.result()
            except Exception as exc:  # noqa: BLE001 - storage failed after its retries
                # a storage failure is not the pair's: the prefix makes a plain rerun re-plan it
                from infra.storage import TRANSIENT_PREFIX, is_transient

                again = TRANSIENT_PREFIX if is_transient(exc) or isinstance(exc, OSError) else ""
                row.update(output_uri=None, output_key=None, flag="error", reason=None,
                           error=f"{again}write failed: {type(exc).__name__}: {exc}")

        order = {pg: i for i, pg in enumerate(pairs)}
        rows.sort(key=lambda r: order[(r["person_id"], r["garment_id"])])
        table = pa.Table.from_pylist(rows, schema=SCORES)
        buf = io.BytesIO()
        pq.write_table(table, buf)
        key = unit_key(uid)
        self.storage.write_bytes(key, buf.getvalue())
        summary = {"unit_id": uid, "pairs": len(rows), **unit_counts([r["flag"] for r in rows], [r["error"] for r in rows]),
                   "seconds": time.time() - t0 - waited,
                   "model_seconds": float(sum(r["seconds"] or 0 for r in rows)), "pid": os.getpid(),
                   "storage_failures_injected": failpoints.storage_failures_injected(),
                   "precision": self.precision,
                   # first calls of new compiled shapes in this unit (compilation): steady pairs/s leaves them out
                   "compile": {"mode": self.s.compile, "fixed_shapes": self.fixed_shapes,
                               "compile_s": float(sum(warm.values())), "shapes": warm},
                   "phases": {"prep": prep, "compute": compute}}   # epoch seconds
        self.storage.mark_done(key, summary)
        with self._prep_lock:
            self.units_done += 1
        return summary

    def ping(self) -> int:
        return os.getpid()


def worker_log_key(worker: int, pid: int) -> str:
    return f"logs/worker-{worker:02d}-p{pid}.log"


class RenderActor(UnitProcessor):
    """A :class:`UnitProcessor` in a Ray actor, whose log records are kept under ``JOB/logs/``."""

    def __init__(self, settings: dict, worker: int):
        from infra.joblog import JobLogHandler

        s = WorkerSettings(**settings)
        self._log = JobLogHandler(make_storage(s.job_root, s.s3), worker_log_key(worker, os.getpid()),
                                  level=s.log_level)
        root = logging.getLogger()
        root.addHandler(self._log)
        # stderr too: Ray keeps it in its session folder, or streams it to the driver (gpvton -v)
        console = logging.StreamHandler()
        console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        console.setLevel(s.log_level)
        root.addHandler(console)
        root.setLevel(min(root.level or logging.WARNING, s.log_level))
        logging.getLogger("gpvton").setLevel(s.log_level)
        logging.captureWarnings(True)
        log.info("render worker %d (pid %d) starting: %s, device %s", worker, os.getpid(), s.variant, s.device)
        try:
            super().__init__(s)
        except BaseException:
            log.exception("render worker %d could not start", worker)
            self._log.flush()
            raise
        # written when the first unit arrives: a pool started before planning leaves no log behind
        # when the driver then stops on a configuration error

    def process_unit(self, unit: dict[str, Any]) -> dict[str, Any]:
        self._log.flush()   # the start-up records, before anything can kill this process
        try:
            res = super().process_unit(unit)
            log.info("unit %d: %d pairs %s in %.1fs", res["unit_id"], res["pairs"], res["counts"], res["seconds"])
            return res
        except BaseException:
            log.exception("unit %s failed", unit.get("unit_id"))
            raise
        finally:
            self._log.flush()


# --- runners ------------------------------------------------------------------------------------

def _lost(unit: dict, exc: BaseException) -> dict:
    return {"unit_id": int(unit["unit_id"]), "pairs": len(unit["pairs"]), "failed": True,
            "error": f"{type(exc).__name__}: {str(exc)[:500]}"}


def run_units_local(settings: WorkerSettings, units: list[dict], on_result: Callable[[dict], None],
                    unit_attempts: int = 2, in_flight: int = 2) -> None:
    """In-process runner: one processor, up to ``in_flight`` units at once on worker threads.

    As in a Ray actor, the next unit is read and decoded while the current one is on the networks
    (the processor takes one unit at a time there), so a laptop or a single GPU is not left idle
    during decoding, scoring and writes. A unit that raises is retried, then reported;
    ``on_result`` is called on the caller's thread, in completion order.
    """
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    proc = UnitProcessor(settings)

    def attempt(u: dict) -> dict:
        for n in range(1, unit_attempts + 1):
            try:
                return proc.process_unit(u)
            except Exception as exc:  # noqa: BLE001 - the unit stays unmarked for the next run
                log.error("unit %s attempt %d/%d failed: %s", u["unit_id"], n, unit_attempts, exc)
                last = exc
        return _lost(u, last)

    pending, in_flight = deque(units), max(1, in_flight)
    with ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="unit") as pool:
        running = set()
        while pending or running:
            while pending and len(running) < in_flight:
                running.add(pool.submit(attempt, pending.popleft()))
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for f in finished:
                on_result(f.result())


def takes_unit(load: list[int], actor: int, pending: int, in_flight: int) -> bool:
    """Whether ``actor`` (with ``load[actor]`` units in flight) gets another unit now.

    Up to ``in_flight`` each while there is plenty of work; once fewer units are left than there
    are actors, only an idle actor takes one, so the last units are not queued behind a busy actor
    while another one waits with nothing to do.
    """
    if load[actor] >= in_flight:
        return False
    return load[actor] == 0 or pending >= len(load)


class RayPool:
    """Fixed pool of Ray core actors with bounded in-flight units per actor (backpressure).

    The actors are created when the pool is (Ray builds them in the background), so a driver
    that creates the pool before planning overlaps the actors' start-up (Python, torch, the
    networks) with its own work; :meth:`run` then feeds them units. A crashed actor is restarted
    (``max_restarts``) and its queued units re-executed (``max_task_retries``); a unit that still
    fails is reported through ``on_result`` with an ``error`` and stays unmarked for the next
    run. A unit whose code raises (e.g. storage down beyond its retries) is resubmitted up to
    ``unit_attempts`` times; an actor that is dead for good (restarts exhausted) is replaced by a
    fresh one. Units carry their shard part files (``unit["files"]``); an actor gets only small
    constructor arguments, so a restarted actor needs nothing from the object store.
    """

    def __init__(self, settings: WorkerSettings, *, actors: int = 1, num_cpus: float = 1.0, num_gpus: float = 0.0,
                 in_flight_per_actor: int = 2, max_restarts: int = 3, max_task_retries: int = 3,
                 env_vars: Optional[dict[str, str]] = None, unit_attempts: int = 2):
        import ray

        # two units per actor run at once: one computes while the other is read, decoded or written
        opts: dict[str, Any] = dict(num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=max_restarts,
                                    max_task_retries=max_task_retries, max_concurrency=max(1, in_flight_per_actor))
        if env_vars:
            opts["runtime_env"] = {"env_vars": dict(env_vars)}
        self._actor = ray.remote(RenderActor).options(**opts)
        self._settings = asdict(settings)
        self.in_flight_per_actor = in_flight_per_actor
        self.unit_attempts = unit_attempts
        self.pool = [self._new_actor(a) for a in range(max(1, actors))]

    def _new_actor(self, worker: int):
        return self._actor.remote(self._settings, worker)

    def run(self, units: list[dict], on_result: Callable[[dict], None]) -> None:
        import ray
        from ray.exceptions import RayActorError

        pool = self.pool
        n = len(pool)
        pending = deque(units)
        inflight: dict[Any, tuple[int, dict, Any]] = {}
        load = [0] * n
        attempts: dict[int, int] = {}

        def fill() -> None:
            for a in range(n):
                while pending and takes_unit(load, a, len(pending), self.in_flight_per_actor):
                    u = pending.popleft()
                    attempts[int(u["unit_id"])] = attempts.get(int(u["unit_id"]), 0) + 1
                    inflight[pool[a].process_unit.remote(u)] = (a, u, pool[a])
                    load[a] += 1

        fill()
        while inflight:
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=2.0)
            for ref in ready:
                a, u, handle = inflight.pop(ref)
                load[a] -= 1
                try:
                    res = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - actor died beyond its retries, or the unit raised
                    if isinstance(exc, RayActorError) and pool[a] is handle:
                        log.error("actor %d is gone (%s); starting a fresh one", a, exc)
                        pool[a] = self._new_actor(a)
                    if attempts[int(u["unit_id"])] < self.unit_attempts:
                        log.warning("unit %s failed (%s); resubmitting", u["unit_id"], exc)
                        pending.append(u)
                        continue
                    log.error("unit %s failed: %s", u["unit_id"], exc)
                    res = _lost(u, exc)
                on_result(res)
            fill()

    def close(self) -> None:
        import ray

        for a in self.pool:
            try:
                ray.kill(a)
            except Exception:  # noqa: BLE001
                pass
