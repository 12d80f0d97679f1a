"""The one training loop every stage runs (warp, generator, parser); a :class:`Stage` supplies only
its examples, networks, optimisers and step.

It runs inside each Ray Train worker; without a Ray Train session it runs as a single process
(tests and benchmarks). What it does for every stage:

* each step takes one *global* batch from a per-epoch permutation seeded by (seed, epoch) and gives
  each worker its own slice (rank r of N gets rows r·b … r·b+b−1): the data are sharded across
  workers and a step is a pure function of (seed, step); the stage's per-step randomness comes from
  a generator seeded by (seed, step, rank);
* the official learning-rate schedule (:func:`lr_factor`) on every optimiser;
* DDP through ``ray.train.torch.prepare_model`` (gloo on CPU; the stage chooses what it wraps):
  gradients are averaged across workers, logged values are all-reduced means over them, and the
  last row records ``replica_spread`` (0.0: the replicas stayed identical);
* checkpoints every ``checkpoint_every`` steps and at the end (:class:`~.run_files.RunFiles`);
  ``resume=True`` continues from the last one and reproduces an uninterrupted run step for step.
"""

from __future__ import annotations

import math
import sys
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import numpy as np
import torch
from torch import Tensor, nn

from infra.storage import S3Settings, Storage

from .data import batch_indices
from .run_files import RunFiles

FORMAT = "gpvton-safetensors-1"


@dataclass(frozen=True)
class WorkerContext:
    """Where this process stands in the run: rank, world size, and whether Ray Train started it."""

    rank: int = 0
    world: int = 1
    in_ray: bool = False

    @staticmethod
    def current() -> "WorkerContext":
        """The Ray Train session's rank and world size, or a plain single process without one."""
        try:
            import ray.train

            ctx = ray.train.get_context()
            return WorkerContext(int(ctx.get_world_rank()), int(ctx.get_world_size()), True)
        except Exception:  # noqa: BLE001 - no Ray Train session: a plain single process
            return WorkerContext()

    def device(self) -> torch.device:
        """The device Ray Train gave this worker (the CPU outside Ray Train)."""
        if not self.in_ray:
            return torch.device("cpu")
        import ray.train.torch as rtt

        return rtt.get_device()

    def prepare(self, net: nn.Module, **ddp_kwargs: Any) -> nn.Module:
        """``net`` on this worker's device, DDP-wrapped when there are several workers."""
        import ray.train.torch as rtt

        kw = {"parallel_strategy_kwargs": ddp_kwargs} if ddp_kwargs else {}
        return rtt.prepare_model(net, move_to_device=True, **kw)

    def report(self, metrics: dict[str, Any]) -> None:
        if self.in_ray:
            import ray.train

            ray.train.report(metrics)


def distributed() -> bool:
    """A torch.distributed group of more than one process is up."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def lr_factor(epoch: int, niter: int, niter_decay: int) -> float:
    """Official schedule: constant for ``niter`` epochs, then −lr0/niter_decay after each epoch."""
    if niter_decay <= 0:
        return 1.0
    return max(0.0, 1.0 - max(0, epoch - 1 - niter) / niter_decay)


def worker_mean(values: Tensor, world: int) -> list[float]:
    """The mean of ``values`` over the workers (this worker's own values outside DDP)."""
    if distributed():
        import torch.distributed as dist

        dist.all_reduce(values)
        values /= world
    return values.tolist()


def replica_spread(net: nn.Module, world: int) -> float:
    """Largest difference between this rank's weight fingerprint and any other rank's (0.0: replicas identical).

    DDP keeps the replicas equal by averaging gradients; a nonzero spread says it did not.
    """
    import torch.distributed as dist

    p = torch.cat([q.detach().double().flatten() for q in getattr(net, "module", net).parameters()])
    ramp = torch.linspace(-1.0, 1.0, p.numel(), dtype=torch.float64)
    probe = torch.stack([p.sum(), (p * p).sum(), (p * ramp).sum(), p.abs().max()])
    every = [torch.zeros_like(probe) for _ in range(world)]
    dist.all_gather(every, probe)
    return max(float((e - probe).abs().max()) for e in every)


class Stage(ABC):
    """One training stage as :func:`run_stage` drives it. ``c`` is the loop config (``loop_config``
    in :mod:`pipelines.train`); subclasses set :attr:`name` and :attr:`examples_key`, and
    :meth:`build` sets :attr:`net` (the trained network, written as ``{name}.safetensors``)."""

    name: str = ""
    examples_key: str = "examples"   # the result's key for the number of examples
    net: nn.Module

    def __init__(self, c: Mapping[str, Any], ctx: WorkerContext) -> None:
        self.c, self.ctx = dict(c), ctx
        self.size = (int(c["height"]), int(c["width_px"]))
        self.s3: Optional[dict] = c.get("s3")

    @abstractmethod
    def load_examples(self) -> int:
        """List the examples (decoded lazily, by index); how many there are."""

    @abstractmethod
    def build(self) -> None:
        """Networks and optimisers; torch's RNG is seeded with the run's seed just before."""

    @abstractmethod
    def optimizers(self) -> dict[str, tuple[Optional[torch.optim.Optimizer], float]]:
        """``state.pt`` key → (optimiser or None, base learning rate); the first one's lr is logged."""

    def extra_networks(self) -> dict[str, tuple[Optional[nn.Module], dict]]:
        """Checkpointed networks besides :attr:`net` (name → module or None, its header)."""
        return {}

    def meta(self) -> dict[str, Any]:
        """The stage's own fields of the weights' header (variant, labels, …)."""
        return {}

    def distribute(self) -> None:
        """Wrap the networks for the workers (after resume: checkpoints hold unwrapped state)."""

    @abstractmethod
    def train_step(self, idx: list[int], epoch: int, rng: np.random.Generator) -> tuple[dict, dict[str, Tensor]]:
        """One optimisation step on this worker's examples ``idx``: (log fields known before the
        losses, scalar tensors to average over the workers — ``total`` first)."""

    def finish(self, out: Storage, meta: dict) -> None:
        """Rank 0's files besides the final weights (e.g. the parser's ONNX export)."""


@dataclass
class _Run:
    """What the step loop needs besides the stage: the files, the weights' header, the schedule."""

    stage: Stage
    files: RunFiles
    meta: dict
    examples: int
    steps_per_epoch: int
    start: int

    def checkpoint(self, step: int) -> None:
        s = self.stage
        models = {"model": (s.net, dict(self.meta, step=step))}
        models.update({k: (m, h) for k, (m, h) in s.extra_networks().items() if m is not None})
        opts = {k: (o.state_dict() if o is not None else None) for k, (o, _) in s.optimizers().items()}
        self.files.save(step, models, opts)


def _header(stage: Stage) -> dict[str, Any]:
    c, ctx = stage.c, stage.ctx
    return {"stage": stage.name, "kind": stage.name, "width": float(c["model_width"]), "format": FORMAT,
            "resolution": list(stage.size), "config": {k: v for k, v in c.items() if k != "s3"},
            "provenance": c.get("provenance", {}), "ray_train": ctx.in_ray, "world_size": ctx.world,
            **stage.meta()}


def _resume(stage: Stage, files: RunFiles) -> int:
    """Networks, optimisers and torch's RNG from the last checkpoint; the step to continue at (0: none)."""
    state = files.resume({"model": stage.net, **{k: m for k, (m, _) in stage.extra_networks().items()}})
    if state is None:
        return 0
    for key, (opt, _) in stage.optimizers().items():
        if opt is not None and state.get(key) is not None:
            opt.load_state_dict(state[key])
    return int(state["step"])


def _prepare(stage: Stage) -> _Run:
    """Examples, networks and optimisers, the run's files, and the step to start at."""
    c, ctx = stage.c, stage.ctx
    if c.get("threads"):
        torch.set_num_threads(int(c["threads"]))
    n = stage.load_examples()
    spe = int(c.get("steps_per_epoch") or max(1, math.ceil(n / (int(c["batch_size"]) * ctx.world))))
    torch.manual_seed(int(c["seed"]))
    stage.build()
    files = RunFiles(Storage(c["output"], S3Settings(**stage.s3) if stage.s3 else None), ctx.rank)
    start = _resume(stage, files) if c.get("resume") else 0
    stage.distribute()
    stage.net.train()
    return _Run(stage, files, _header(stage), n, spe, start)


def _one_step(run: _Run, step: int) -> dict[str, Any]:
    """Schedule, this worker's slice of the global batch, the stage's step; the step's log row."""
    s, c = run.stage, run.stage.c
    t0 = time.perf_counter()
    epoch = 1 + step // run.steps_per_epoch
    f = lr_factor(epoch, int(c.get("niter", 10 ** 9)), int(c.get("niter_decay", 0)))
    opts = s.optimizers()
    for opt, lr in opts.values():
        if opt is not None:
            for g in opt.param_groups:
                g["lr"] = lr * f
    bs, seed, rank = int(c["batch_size"]), int(c["seed"]), s.ctx.rank
    idx = batch_indices(run.examples, step, run.steps_per_epoch, bs * s.ctx.world, seed)[rank * bs:(rank + 1) * bs]
    fields, values = s.train_step(idx, epoch, np.random.default_rng([seed, step, rank]))
    means = worker_mean(torch.stack([v.detach() for v in values.values()]), s.ctx.world)
    row: dict[str, Any] = {"step": step + 1, "epoch": epoch, "lr": next(iter(opts.values()))[1] * f, **fields}
    row.update(zip(values.keys(), means))
    row["seconds"] = time.perf_counter() - t0
    return row


def run_stage(stage: Stage) -> dict[str, Any]:
    """Train ``stage`` to ``steps`` (resuming if asked); rank 0 writes checkpoints, logs and the
    final weights. Returns (and reports to Ray Train) the steps, examples and final loss."""
    run = _prepare(stage)
    c, ctx = stage.c, stage.ctx
    steps, ck_every, report_every = int(c["steps"]), int(c.get("checkpoint_every") or 0), int(c.get("report_every") or 0)
    rows = run.files.rows
    bar = None
    if ctx.rank == 0 and c.get("progress", True):
        from tqdm import tqdm

        bar = tqdm(total=steps, initial=run.start, desc=f"train {stage.name}", file=sys.stderr, mininterval=1.0,
                   dynamic_ncols=True)
    for step in range(run.start, steps):
        rows.append(_one_step(run, step))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{rows[-1]['total']:.3f}")
        if ck_every and (step + 1) % ck_every == 0 and step + 1 < steps:
            run.checkpoint(step + 1)
        if report_every and (step + 1) % report_every == 0:
            ctx.report({"step": step + 1, "loss": rows[-1]["total"]})
    if bar is not None:
        bar.close()
    if rows and distributed():  # every rank takes part; rank 0 logs it with the last step
        rows[-1]["replica_spread"] = replica_spread(stage.net, ctx.world)
    if run.start < steps or not run.files.has_checkpoint():
        run.checkpoint(steps)
    final = dict(run.meta, step=steps)
    run.files.finish(f"{stage.name}.safetensors", stage.net, final, stage.name)
    if ctx.rank == 0:
        stage.finish(run.files.out, final)
    result = {"steps": steps, stage.examples_key: run.examples, "final_loss": rows[-1]["total"] if rows else None}
    ctx.report(result)
    return result
