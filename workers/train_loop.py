"""Per-worker Ray Train loops: the warping module and the try-on generator (GPVTON.md §9), and
our human parser (:func:`parser_loop`, stage ``parser``).

``train_loop_per_worker(config)`` runs inside each Ray Train worker (``gpvton train`` always goes
through Ray Train); without a Ray Train session it runs as a single process, which tests and
benchmarks use. What it does for warp and generator:

* reads the training pairs — persons with a ``worn_garment_id`` joined with their garment — from
  the condition shards (local folder or ``s3://``), at the training resolution;
* every step takes one *global* batch from a per-epoch permutation seeded by (seed, epoch) and
  gives each worker its own slice (rank r of world size N gets rows r·b … r·b+b−1), so the data
  are sharded across workers and a step is a pure function of (seed, step): resuming is exact;
* augmentations: none. The official training (GPVTON.md §8.2) loads images as stored: no resize
  or crop, flipping hard-disabled; a flip would also have to swap the left/right labels. We keep
  that; the only randomness per step is DGT's FULL/SHORT choice, drawn from a generator seeded
  by (seed, step, rank);
* DDP through ``ray.train.torch.prepare_model`` (gloo on CPU): gradients are averaged across
  workers; logged losses are all-reduced means over the workers;
* checkpoints every ``checkpoint_every`` steps and at the end, written by rank 0 straight to the
  job storage through :class:`infra.storage.Storage`::

      OUT/checkpoints/step-NNNNNNNN/{model.safetensors, disc.safetensors, state.pt}
      OUT/checkpoints/latest.json                {"step": N, "dir": "checkpoints/step-NNNNNNNN"}
      OUT/{warp|generator}.safetensors           final weights (what ``gpvton render`` loads)
      OUT/log.csv, OUT/log.jsonl                 one row per step: every loss term, lr, seconds
      OUT/loss_curve.png                         total loss per step (matplotlib, Agg)

  ``state.pt`` holds the optimiser states, the torch RNG state and the step; ``resume=True``
  continues from ``latest.json`` and reproduces an uninterrupted run step for step.

The parser stage shares the data slicing, checkpoints, logs and resume (:class:`RunFiles`) and
writes ``OUT/parser.safetensors``, ``OUT/parser.onnx`` and ``OUT/parser.json``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import sys
import time
from typing import Any, Optional

import numpy as np

from gpvton_core.conditions.labels import variant_categories

log = logging.getLogger(__name__)

LOG_FIELDS_WARP = ("l1", "vgg", "mask", "smooth2", "full_l1", "full_mask", "attention", "parsing",
                   "smooth1", "gan")
LOG_FIELDS_GEN = ("l1_tryon", "l1_rendered", "mask", "vgg_tryon", "vgg_rendered", "gan")


# ---- context -----------------------------------------------------------------------------------
def _context() -> tuple[int, int, bool]:
    """(rank, world size, inside a Ray Train session)."""
    try:
        import ray.train

        ctx = ray.train.get_context()
        return int(ctx.get_world_rank()), int(ctx.get_world_size()), True
    except Exception:  # noqa: BLE001 - no Ray Train session: a plain single process
        return 0, 1, False


def _distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


# ---- data ----------------------------------------------------------------------------------------
def _png(data: bytes) -> np.ndarray:
    from PIL import Image

    im = Image.open(io.BytesIO(data))
    if im.mode == "P":
        im = im.convert("L")
    return np.asarray(im)


def _read_table(storage, prefix: str, columns: Optional[list[str]] = None):
    """The table's current rows (the parts the shards' manifest lists), or None when it has none."""
    from infra.shards import ShardSet

    t = ShardSet(storage.root, storage.s3, storage=storage).read_table(prefix, columns)
    return t if t.num_rows else None


def list_pairs(shards: str, variant: str, s3: Optional[dict] = None,
               categories: Optional[list[str]] = None) -> tuple[list[dict], dict[str, dict]]:
    """Training pairs (sorted by person id) and the raw garment rows, from the shards.

    VITON-HD's warp variant only has rules for upper garments, so ``variant="vitonhd"`` keeps the
    upper pairs; the Dress Code variant takes all three categories.
    """
    from infra.storage import S3Settings, Storage

    st = Storage(shards, S3Settings(**s3) if s3 else None)
    persons = _read_table(st, "persons")
    garments = _read_table(st, "garments")
    if persons is None or garments is None:
        raise ValueError(f"{shards}: no persons or no garments in the shards")
    grows = {r["garment_id"]: r for r in garments.to_pylist()}
    cats = set(categories or variant_categories(variant)) & set(variant_categories(variant))
    pairs = []
    for r in persons.to_pylist():
        gid = r.get("worn_garment_id")
        g = grows.get(gid) if gid else None
        if g is None or g["category"] not in cats:
            continue
        pairs.append({"person": r, "garment_id": gid})
    pairs.sort(key=lambda p: p["person"]["person_id"])
    return pairs, grows


def decode_pair(pair: dict, grows: dict[str, dict], size: tuple[int, int], variant: str) -> dict:
    """Decode one pair's PNGs, resize to ``size`` and build its training sample."""
    from gpvton_core.training import batch as B

    r = pair["person"]
    g = grows[pair["garment_id"]]
    img, (parsing, dp), kp = B.resize_arrays(_png(r["image_png"])[..., :3],
                                             [_png(r["parsing_png"]), _png(r["densepose_png"])],
                                             np.asarray(r["keypoints"], np.float32), size)
    gimg, (gmask, gparts), _ = B.resize_arrays(_png(g["image_png"])[..., :3],
                                               [_png(g["mask_png"]), _png(g["parts_png"])], None, size)
    person = {"person_id": r["person_id"], "image": np.ascontiguousarray(img), "parsing": parsing,
              "densepose": dp, "keypoints": kp, "pc_ratio": r.get("pc_ratio")}
    garment = {"garment_id": g["garment_id"], "category": g["category"], "image": np.ascontiguousarray(gimg),
               "mask": gmask, "parts": gparts}
    return B.make_sample(person, garment, variant)


def list_persons(shards: str, s3: Optional[dict] = None) -> list[dict]:
    """Every person row (id, image, 29-label parsing), sorted by id: the parser's training data."""
    from infra.storage import S3Settings, Storage

    st = Storage(shards, S3Settings(**s3) if s3 else None)
    persons = _read_table(st, "persons", ["person_id", "image_png", "parsing_png"])
    rows = persons.to_pylist() if persons is not None else []
    return sorted(rows, key=lambda r: r["person_id"])


def count_examples(shards: str, stage: str, variant: str = "vitonhd", s3: Optional[dict] = None,
                   categories: Optional[list[str]] = None) -> int:
    """How many training examples the shards give ``stage`` (ids only: cheap on the driver).

    Raises ValueError with what is wrong when there are none."""
    from infra.storage import S3Settings, Storage

    st = Storage(shards, S3Settings(**s3) if s3 else None)
    from infra.shards import ShardSet

    if not ShardSet(st.root, st.s3, storage=st).parts("persons"):
        raise ValueError(f"{shards}: no condition shards there (no persons/*.parquet); "
                         "build them with gpvton preprocess")
    persons = _read_table(st, "persons", ["person_id", "worn_garment_id"])
    if persons is None:
        raise ValueError(f"{shards}: the shards hold no persons")
    if stage == "parser":
        return persons.num_rows
    garments = _read_table(st, "garments", ["garment_id", "category"])
    cats = set(categories or variant_categories(variant)) & set(variant_categories(variant))
    gcat = dict(zip(garments.column("garment_id").to_pylist(), garments.column("category").to_pylist())) \
        if garments is not None else {}
    n = sum(1 for g in persons.column("worn_garment_id").to_pylist() if g and gcat.get(g) in cats)
    if not n:
        raise ValueError(f"{shards}: no training pairs (persons with a worn_garment_id whose garment is "
                         f"{' or '.join(sorted(cats)) or 'of a usable category'}) for the {variant} {stage}")
    return n


def decode_person(row: dict, size: tuple[int, int], labels: str) -> tuple[np.ndarray, np.ndarray]:
    """A person row → (RGB H×W×3 uint8, labels H×W uint8 in the ``labels`` scheme) at ``size``."""
    from gpvton_core.parser import collapse_gp29
    from gpvton_core.training.batch import resize_arrays

    img, (parsing,), _ = resize_arrays(_png(row["image_png"])[..., :3], [_png(row["parsing_png"])], None, size)
    return np.ascontiguousarray(img), collapse_gp29(parsing, labels)


def batch_indices(n: int, step: int, steps_per_epoch: int, global_batch: int, seed: int) -> list[int]:
    """Global batch of ``step``: a slice of the per-epoch permutation (wrapping)."""
    epoch = step // steps_per_epoch
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    start = (step % steps_per_epoch) * global_batch
    return [int(perm[(start + i) % n]) for i in range(global_batch)]


def lr_factor(epoch: int, niter: int, niter_decay: int) -> float:
    """Official schedule: constant for ``niter`` epochs, then −lr0/niter_decay after each epoch."""
    if niter_decay <= 0:
        return 1.0
    return max(0.0, 1.0 - max(0, epoch - 1 - niter) / niter_decay)


# ---- checkpoints --------------------------------------------------------------------------------
def model_path(url: str, s3: Optional[dict] = None) -> str:
    """A model file (checkpoint, VGG weights) by URL, fetched once into the sha256-keyed cache."""
    from infra.models import fetch_model
    from infra.storage import S3Settings

    return fetch_model(url, S3Settings(**s3) if s3 else None).path


def load_model_file(url: str, s3: Optional[dict] = None):
    """(network, meta) of a warp / generator checkpoint by URL: our safetensors or an official ``.pth``."""
    from gpvton_core.checkpoints import build_from_checkpoint

    return build_from_checkpoint(model_path(url, s3))


def _unwrap(m):
    return getattr(m, "module", m)


def safetensors_bytes(model, meta: dict[str, Any]) -> bytes:
    """The core's one safetensors format (:func:`gpvton_core.checkpoints.safetensors_bytes`), so that
    render, training and resume read every checkpoint with the same reader; networks other than a
    warp or generator (discriminator, parser) keep the caller's ``kind``."""
    from gpvton_core.checkpoints import CheckpointError, model_kind
    from gpvton_core.checkpoints import safetensors_bytes as core_bytes

    net = _unwrap(model)
    try:
        kind = model_kind(net)
    except CheckpointError:
        kind = str(meta.get("kind") or type(net).__name__)
    return core_bytes(net, meta, kind)


def load_safetensors_bytes(data: bytes):
    """The state dict of :func:`safetensors_bytes` output."""
    from gpvton_core.checkpoints import load_safetensors_bytes as core_load

    return core_load(data)[0]


def read_meta(data: bytes) -> dict[str, Any]:
    """The JSON header of a checkpoint's bytes."""
    from gpvton_core.checkpoints import safetensors_meta

    return safetensors_meta(data)


# ---- run files -----------------------------------------------------------------------------------
class RunFiles:
    """A run's checkpoints and logs under OUT (the layout in the module docstring); rank 0 writes.

    ``rows`` is the loss log, one dict per step; :meth:`resume` trims it to the checkpoint's step.
    """

    def __init__(self, out, rank: int) -> None:
        self.out, self.rank = out, rank
        self.rows: list[dict] = []

    def resume(self, models: dict[str, Any]) -> Optional[dict]:
        """Load the latest checkpoint into ``models`` (name → module or None); its ``state.pt``
        (optimisers, ``torch_rng``, ``step``), or None when there is nothing to resume."""
        import torch

        if not self.out.exists("checkpoints/latest.json"):
            return None
        d = self.out.read_json("checkpoints/latest.json")["dir"]
        for name, m in models.items():
            key = f"{d}/{name}.safetensors"
            if m is not None and (name == "model" or self.out.exists(key)):
                m.load_state_dict(load_safetensors_bytes(self.out.read_bytes(key)))
        state = torch.load(io.BytesIO(self.out.read_bytes(f"{d}/state.pt")), map_location="cpu", weights_only=True)
        torch.set_rng_state(state["torch_rng"])
        start = int(state["step"])
        if self.out.exists("log.jsonl"):
            rows = [json.loads(l) for l in self.out.read_bytes("log.jsonl").decode().splitlines() if l.strip()]
            self.rows[:] = [r for r in rows if r["step"] <= start]
        if self.rank == 0:
            log.info("resuming from %s (step %d)", d, start)
        return state

    def save(self, step: int, models: dict[str, tuple[Any, dict]], state: dict) -> None:
        """``checkpoints/step-N/{name}.safetensors`` per model, ``state.pt`` (+ torch RNG and step),
        the logs, then ``latest.json`` last: a checkpoint is complete once it is named there."""
        import torch

        if self.rank != 0:
            return
        d = f"checkpoints/step-{step:08d}"
        for name, (m, meta) in models.items():
            self.out.write_bytes(f"{d}/{name}.safetensors", safetensors_bytes(m, meta))
        buf = io.BytesIO()
        torch.save({**state, "torch_rng": torch.get_rng_state(), "step": step}, buf)
        self.out.write_bytes(f"{d}/state.pt", buf.getvalue())
        self.write_logs()
        self.out.write_json("checkpoints/latest.json", {"step": step, "dir": d})

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

    def finish(self, name: str, net, meta: dict, stage: str) -> None:
        """The final weights (``name``), the logs and ``loss_curve.png``."""
        if self.rank != 0:
            return
        self.out.write_bytes(name, safetensors_bytes(net, meta))
        self.write_logs()
        try:
            self.out.write_bytes("loss_curve.png", plot_curve(self.rows, stage))
        except Exception as exc:  # noqa: BLE001 - a plot must not fail a finished run
            log.warning("loss curve not written: %s", exc)


# ---- the loop ------------------------------------------------------------------------------------
def _replica_spread(net, world: int) -> float:
    """Largest difference between this rank's weight fingerprint and any other rank's (0.0: replicas identical).

    DDP keeps the replicas equal by averaging gradients; a nonzero spread says it did not.
    """
    import torch
    import torch.distributed as dist

    p = torch.cat([q.detach().double().flatten() for q in _unwrap(net).parameters()])
    ramp = torch.linspace(-1.0, 1.0, p.numel(), dtype=torch.float64)
    probe = torch.stack([p.sum(), (p * p).sum(), (p * ramp).sum(), p.abs().max()])
    every = [torch.zeros_like(probe) for _ in range(world)]
    dist.all_gather(every, probe)
    return max(float((e - probe).abs().max()) for e in every)


def train_loop_per_worker(config: dict[str, Any]) -> dict[str, Any]:
    import torch

    from gpvton_core.training import dgt
    from gpvton_core.training import losses as L
    from gpvton_core.training.batch import collate
    from gpvton_core.training.discriminator import SpectralDiscriminator
    from infra.storage import S3Settings, Storage

    c = dict(config)
    if c.get("stage") == "parser":
        return parser_loop(c)
    rank, world, in_ray = _context()
    if c.get("threads"):
        torch.set_num_threads(int(c["threads"]))
    stage, variant = c["stage"], c["variant"]
    H, W = int(c["height"]), int(c["width_px"])
    bs, steps, seed = int(c["batch_size"]), int(c["steps"]), int(c["seed"])
    s3 = c.get("s3")
    out = Storage(c["output"], S3Settings(**s3) if s3 else None)

    pairs, grows = list_pairs(c["shards"], variant, s3, c.get("categories"))
    if c.get("max_pairs"):
        pairs = pairs[: int(c["max_pairs"])]
    if not pairs:
        raise ValueError(f"{c['shards']}: no training pairs (persons with a worn_garment_id"
                         f"{' and an upper garment' if variant == 'vitonhd' else ''})")
    n = len(pairs)
    global_batch = bs * world
    spe = int(c.get("steps_per_epoch") or max(1, math.ceil(n / global_batch)))
    cache: dict[int, dict] = {}

    def sample(i: int) -> dict:
        if i not in cache:
            cache[i] = decode_pair(pairs[i], grows, (H, W), variant)
        return cache[i]

    # models ---------------------------------------------------------------------------------------
    torch.manual_seed(seed)
    width = float(c["model_width"])
    if stage == "warp":
        from gpvton_core.warp import NUM_SEG_CLASSES, LFGPWarp

        net = LFGPWarp(variant, width)
        ncls = NUM_SEG_CLASSES[variant]
        disc_in = 51 + 1 + ncls
        warp_net = None
    else:
        from gpvton_core.generator import TryOnGenerator
        from gpvton_core.warp import LFGPWarp

        net = TryOnGenerator(width)
        disc_in = 39
        warp_net, _ = load_model_file(c["warp_checkpoint"], s3)   # ours or an official .pth
        if not isinstance(warp_net, LFGPWarp):
            raise ValueError(f"--warp-checkpoint {c['warp_checkpoint']} is not a warp network")
        warp_net.eval().requires_grad_(False)
    disc = SpectralDiscriminator(disc_in, float(c.get("disc_width") or width)) if c.get("gan", True) else None
    vgg = None
    if c.get("perceptual", True):
        from gpvton_core.training.vgg import VGG19Features, VGGLoss

        vgg = VGGLoss(VGG19Features(normalize=bool(c.get("vgg_normalize", True))).load_weights(
            model_path(c["vgg_weights"], s3)))
    betas = (_beta1(c, 0.5), 0.999)
    opt = torch.optim.Adam(net.parameters(), lr=float(c["lr"]), betas=betas)
    opt_d = torch.optim.Adam(disc.parameters(), lr=float(c["lr_d"]), betas=betas) if disc is not None else None

    # resume -----------------------------------------------------------------------------------------
    files = RunFiles(out, rank)
    start = 0
    if c.get("resume"):
        state = files.resume({"model": net, "disc": disc})
        if state is not None:
            opt.load_state_dict(state["opt"])
            if opt_d is not None and state.get("opt_d") is not None:
                opt_d.load_state_dict(state["opt_d"])
            start = int(state["step"])
    rows = files.rows

    if in_ray and world > 1:
        import ray.train.torch as rtt

        net = rtt.prepare_model(net, move_to_device=True, parallel_strategy_kwargs={"find_unused_parameters": True})
        if disc is not None:
            disc = rtt.prepare_model(disc, move_to_device=True)
    net.train()

    meta_base = {"stage": stage, "kind": stage, "variant": variant, "width": width, "format": "gpvton-safetensors-1",
                 "resolution": [H, W], "config": {k: v for k, v in c.items() if k not in ("s3",)},
                 "provenance": c.get("provenance", {}), "ray_train": in_ray, "world_size": world}

    def save_checkpoint(step: int) -> None:
        models = {"model": (net, dict(meta_base, step=step))}
        if disc is not None:
            models["disc"] = (disc, {"kind": "discriminator"})
        files.save(step, models, {"opt": opt.state_dict(),
                                  "opt_d": opt_d.state_dict() if opt_d is not None else None})

    fields = LOG_FIELDS_WARP if stage == "warp" else LOG_FIELDS_GEN
    bar = None
    if rank == 0 and c.get("progress", True):
        from tqdm import tqdm

        bar = tqdm(total=steps, initial=start, desc=f"train {stage}", file=sys.stderr, mininterval=1.0,
                   dynamic_ncols=True)
    ck_every = int(c.get("checkpoint_every") or 0)
    mask_epoch = int(c.get("mask_epoch", 70))
    for step in range(start, steps):
        t0 = time.perf_counter()
        epoch = 1 + step // spe
        f = lr_factor(epoch, int(c.get("niter", 10 ** 9)), int(c.get("niter_decay", 0)))
        for g in opt.param_groups:
            g["lr"] = float(c["lr"]) * f
        if opt_d is not None:
            for g in opt_d.param_groups:
                g["lr"] = float(c["lr_d"]) * f
        idx = batch_indices(n, step, spe, global_batch, seed)[rank * bs:(rank + 1) * bs]
        b = collate([sample(i) for i in idx])
        rng = np.random.default_rng([seed, step, rank])
        row: dict[str, Any] = {"step": step + 1, "epoch": epoch, "lr": float(c["lr"]) * f}
        if stage == "warp":
            dgt_on = bool(c.get("dgt", True)) and dgt.active(epoch, mask_epoch)
            t_parts = t_full = None
            if dgt_on:
                choices = [dgt.choose_region(float(r), variant, cat, rng, bool(c.get("dynamic_mask", True)))
                           for r, cat in zip(b["pc_ratio"].tolist(), b["category"])]
                pm1, pm2 = dgt.loss_masks(b, choices, variant)
                t_parts, t_full = dgt.truncation_masks(b, pm1, pm2, variant)
            parts = b["garment_parts"]
            args = [b["cond"], b["garment"], b["garment_mask"], b["garment_input"][:, 3:4],
                    *[b["garment"] * parts[:, k] for k in range(3)], *[parts[:, k] for k in range(3)],
                    b["preserve"]]
            if variant == "dresscode":
                args.append(b["type_map"])
            o = net(*args, mode="training")
            terms = L.warp_losses(o, b, variant, t_parts=t_parts, t_full=t_full, vgg=vgg, disc=disc)
            fake_for_d = o.segs[-1]
            row["dgt"] = int(dgt_on)
        else:
            x, rendered, tryon, m, real = generator_forward(net, warp_net, b, variant)
            terms = L.generator_losses(x, rendered, tryon, m, real, vgg=vgg, disc=disc)
        if disc is not None:
            disc.requires_grad_(False)
        opt.zero_grad(set_to_none=True)
        terms["total"].backward()
        opt.step()
        d_loss = torch.zeros(())
        if disc is not None:
            disc.requires_grad_(True)
            opt_d.zero_grad(set_to_none=True)
            if stage == "warp":
                d_loss = L.warp_disc_loss(disc, b, fake_for_d, L.CE_WEIGHTS[variant].__len__())
            else:
                d_loss = L.generator_disc_loss(disc, x, rendered, real)
            d_loss.backward()
            opt_d.step()
        vals = torch.stack([terms["total"].detach()] + [terms[k].detach() for k in fields] + [d_loss.detach()])
        if _distributed():
            import torch.distributed as dist

            dist.all_reduce(vals)
            vals /= world
        v = vals.tolist()
        row["total"] = v[0]
        row.update({k: v[i + 1] for i, k in enumerate(fields)})
        row["d_loss"] = v[-1]
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{v[0]:.3f}")
        if ck_every and (step + 1) % ck_every == 0 and step + 1 < steps:
            save_checkpoint(step + 1)
        if in_ray and c.get("report_every") and (step + 1) % int(c["report_every"]) == 0:
            import ray.train

            ray.train.report({"step": step + 1, "loss": v[0]})
    if bar is not None:
        bar.close()
    if rows and _distributed():  # every rank takes part; rank 0 logs it with the last step
        rows[-1]["replica_spread"] = _replica_spread(net, world)
    if start < steps or not out.exists("checkpoints/latest.json"):
        save_checkpoint(steps)
    files.finish(f"{stage}.safetensors", net, dict(meta_base, step=steps), stage)
    result = {"steps": steps, "pairs": n, "final_loss": rows[-1]["total"] if rows else None}
    if in_ray:
        import ray.train

        ray.train.report(result)
    return result


# ---- the parser --------------------------------------------------------------------------------------
def _beta1(c: dict, default: float) -> float:
    return float(c["beta1"]) if c.get("beta1") is not None else default


def parser_contract(labels: str, size: tuple[int, int], keep_aspect: bool) -> dict[str, Any]:
    """``parser.json``: the :class:`~pipelines.preprocess.estimators.parser.ParserConfig` fields
    under which ``parser.onnx`` runs (input RGB in 0..1, normalised; logits at the input size)."""
    from gpvton_core.parser import INPUT_MEAN, INPUT_STD, SCHEMES

    return {"classes": labels, "input_size": list(size), "channel_order": "rgb", "mean": list(INPUT_MEAN),
            "std": list(INPUT_STD), "keep_aspect": keep_aspect, "flip": False, "output": "logits",
            "output_index": 0, "class_map": list(range(SCHEMES[labels]))}


def onnx_available() -> bool:
    """torch's ONNX exporter (TorchScript-based; the dynamo one needs onnxscript) needs ``onnx``."""
    import importlib.util

    return importlib.util.find_spec("onnx") is not None


def export_onnx(net, size: tuple[int, int]) -> bytes:
    """ONNX bytes of a :class:`~gpvton_core.parser.ParserNet`: input ``input`` N×3×H×W, output
    ``logits``, batch and spatial axes dynamic (opset 17)."""
    import copy
    import warnings

    import torch

    if not onnx_available():
        raise RuntimeError("exporting the parser to ONNX needs the onnx package: pip install onnx "
                           "(or train with --set export_onnx=false and keep parser.safetensors)")
    m = copy.deepcopy(_unwrap(net)).cpu().eval()
    axes = {"input": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch", 2: "height", 3: "width"}}
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")     # the TorchScript exporter's deprecation and IN train-mode notes
        torch.onnx.export(m, torch.zeros(1, 3, *size), buf, dynamo=False, input_names=["input"],
                          output_names=["logits"], dynamic_axes=axes, opset_version=17)
    return buf.getvalue()


def parser_loop(c: dict[str, Any]) -> dict[str, Any]:
    """Train :class:`gpvton_core.parser.ParserNet` on the shards' persons (cross-entropy on the
    29-label parsings, or their LIP collapse); writes ``parser.safetensors``, ``parser.onnx`` and
    ``parser.json`` besides the usual checkpoints and logs. Augmentation: a horizontal flip with the
    left/right classes swapped, drawn from (seed, step, rank) like the rest, so resuming is exact."""
    import torch
    import torch.nn.functional as F

    from gpvton_core.parser import SCHEMES, ParserNet, flip_labels, normalize_rgb
    from infra.storage import S3Settings, Storage

    rank, world, in_ray = _context()
    if c.get("threads"):
        torch.set_num_threads(int(c["threads"]))
    labels = c.get("labels") or "gp29"
    H, W = int(c["height"]), int(c["width_px"])
    bs, steps, seed = int(c["batch_size"]), int(c["steps"]), int(c["seed"])
    s3 = c.get("s3")
    out = Storage(c["output"], S3Settings(**s3) if s3 else None)
    persons = list_persons(c["shards"], s3)
    if c.get("max_pairs"):
        persons = persons[: int(c["max_pairs"])]
    if not persons:
        raise ValueError(f"{c['shards']}: no persons to train a parser on")
    n = len(persons)
    global_batch = bs * world
    spe = int(c.get("steps_per_epoch") or max(1, math.ceil(n / global_batch)))
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def sample(i: int) -> tuple[np.ndarray, np.ndarray]:
        if i not in cache:
            cache[i] = decode_person(persons[i], (H, W), labels)
        return cache[i]

    torch.manual_seed(seed)
    width, ncls = float(c["model_width"]), SCHEMES[labels]
    net = ParserNet(ncls, width)
    opt = torch.optim.Adam(net.parameters(), lr=float(c["lr"]), betas=(_beta1(c, 0.9), 0.999))
    files = RunFiles(out, rank)
    start = 0
    if c.get("resume"):
        state = files.resume({"model": net})
        if state is not None:
            opt.load_state_dict(state["opt"])
            start = int(state["step"])
    device = torch.device("cpu")
    if in_ray:
        import ray.train.torch as rtt

        device = rtt.get_device()
        net = rtt.prepare_model(net, move_to_device=True)   # DDP when world > 1
    net.train()
    h0, w0 = _png(persons[0]["parsing_png"]).shape[:2]
    meta = {"stage": "parser", "kind": "parser", "labels": labels, "num_classes": ncls, "width": width,
            "format": "gpvton-safetensors-1", "resolution": [H, W], "contract": None,
            "config": {k: v for k, v in c.items() if k != "s3"}, "provenance": c.get("provenance", {}),
            "ray_train": in_ray, "world_size": world}
    meta["contract"] = parser_contract(labels, (H, W), keep_aspect=h0 * W == w0 * H)

    def save_checkpoint(step: int) -> None:
        files.save(step, {"model": (net, dict(meta, step=step))}, {"opt": opt.state_dict()})

    bar = None
    if rank == 0 and c.get("progress", True):
        from tqdm import tqdm

        bar = tqdm(total=steps, initial=start, desc="train parser", file=sys.stderr, mininterval=1.0,
                   dynamic_ncols=True)
    ck_every = int(c.get("checkpoint_every") or 0)
    augment = bool(c.get("augment", True))
    for step in range(start, steps):
        t0 = time.perf_counter()
        epoch = 1 + step // spe
        f = lr_factor(epoch, int(c.get("niter", 10 ** 9)), int(c.get("niter_decay", 0)))
        for g in opt.param_groups:
            g["lr"] = float(c["lr"]) * f
        idx = batch_indices(n, step, spe, global_batch, seed)[rank * bs:(rank + 1) * bs]
        rng = np.random.default_rng([seed, step, rank])
        imgs, labs = [], []
        for i in idx:
            img, lab = sample(i)
            if augment and rng.random() < 0.5:
                img, lab = img[:, ::-1], flip_labels(lab, labels)
            imgs.append(np.ascontiguousarray(img))
            labs.append(np.ascontiguousarray(lab))
        x = normalize_rgb(torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2)).to(device)
        y = torch.from_numpy(np.stack(labs)).long().to(device)
        logits = net(x)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        vals = torch.stack([loss.detach(), (logits.detach().argmax(1) == y).float().mean()])
        if _distributed():
            import torch.distributed as dist

            dist.all_reduce(vals)
            vals /= world
        v = vals.tolist()
        files.rows.append({"step": step + 1, "epoch": epoch, "lr": float(c["lr"]) * f, "total": v[0],
                           "pixel_acc": v[1], "seconds": time.perf_counter() - t0})
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{v[0]:.3f}")
        if ck_every and (step + 1) % ck_every == 0 and step + 1 < steps:
            save_checkpoint(step + 1)
    if bar is not None:
        bar.close()
    if start < steps or not out.exists("checkpoints/latest.json"):
        save_checkpoint(steps)
    files.finish("parser.safetensors", net, dict(meta, step=steps), "parser")
    if rank == 0:
        if c.get("export_onnx", True):
            out.write_bytes("parser.onnx", export_onnx(net, (H, W)))
        out.write_json("parser.json", meta["contract"])
    rows = files.rows
    result = {"steps": steps, "persons": n, "final_loss": rows[-1]["total"] if rows else None}
    if in_ray:
        import ray.train

        ray.train.report(result)
    return result


def generator_forward(net, warp_net, b: dict, variant: str):
    """Warped garment from the frozen warper (test-time assembly, uint8 round trip), generator input,
    outputs: (x, rendered, tryon, composition mask, real)."""
    import torch

    from gpvton_core import assembly as asm
    from gpvton_core.warp import stack_parts

    parts = b["garment_parts"]
    with torch.no_grad():
        tm = b["type_map"] if variant == "dresscode" else None
        gf = warp_net.encode_garment(b["garment_input"], tm)
        pf = warp_net.encode_person(b["cond"])
        part_masks = stack_parts(parts[:, 0], parts[:, 1], parts[:, 2])
        o = warp_net.decode(gf, pf, part_masks, b["preserve"], mode="inference")
        flow, seg = o.last_flow, asm.seg_argmax(o.seg_logits)
        if flow.shape[-2:] != b["garment"].shape[-2:]:  # warp at half resolution (1024 path)
            flow, seg = asm.upsample_flow(flow), asm.upsample_labels(seg)
        dev = b["garment"].device
        part_images = stack_parts(*(b["garment"] * parts[:, k] for k in range(3)))
        cloth, label = asm.assemble_warp(part_images, part_masks, flow, seg, b["preserve"],
                                         torch.as_tensor(b["part_classes"], device=dev),
                                         torch.as_tensor(b["extra_classes"], device=dev))
        cloth = asm.quantize_uint8(cloth)
        # generator input; Dress Code: generator-stage preserve × (1 − warped garment mask)
        x, gmask = asm.generator_input(b["image"], b["preserve_gen"], cloth, label, b["skin"], b["pose"], variant)
    raw = net(x)
    rendered = torch.tanh(raw[:, 0:3])
    m = torch.sigmoid(raw[:, 3:4]) * gmask
    if variant == "vitonhd":  # training only: × the ground-truth person garment mask (§9.3)
        m = m * b["person_garment_mask"]
    tryon = cloth * m + rendered * (1 - m)
    return x, rendered, tryon, m, b["image"]


def plot_curve(rows: list[dict], stage: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    steps = [r["step"] for r in rows]
    ax.plot(steps, [r["total"] for r in rows], label="total", lw=1.5)
    for k in (("l1", "full_l1", "parsing") if stage == "warp" else ("l1_tryon", "l1_rendered")):
        if rows and k in rows[0]:
            ax.plot(steps, [r[k] for r in rows], label=k, lw=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.set_title(f"gpvton train {stage}")
    ax.legend()
    ax.grid(alpha=0.3)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
