"""Handing the units to the workers: in process or on a Ray actor pool, with a progress bar.

A Ray session is joined (``address``) or started locally for the job and shut down with it; the
pool may be started before planning, so that the actors' start-up overlaps the driver's work.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

from pipelines.cli import is_verbose
from pipelines.render.config import RenderConfig
from workers.render.runners import RayPool, run_units_local
from workers.render.settings import WorkerSettings


@dataclass
class Dispatched:
    """What the workers did this run: pairs rendered, lost units, seconds from the first unit on."""

    rendered: int = 0
    lost: list[dict] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def pairs_per_second(self) -> Optional[float]:
        return self.rendered / self.elapsed if self.rendered and self.elapsed > 0 else None


def dispatch(cfg: RenderConfig, settings: WorkerSettings, units: list[dict], pool: Optional[RayPool], s3,
             stack: contextlib.ExitStack) -> Dispatched:
    """Run ``units`` on the configured runner (``pool`` when one was started early)."""
    from tqdm import tqdm

    todo_pairs = sum(len(u["pairs"]) for u in units)
    bar = tqdm(total=todo_pairs, unit="pair", desc="render", disable=not cfg.progress or not todo_pairs,
               file=sys.stderr, dynamic_ncols=True)
    out = Dispatched()
    start = time.time()

    def on_result(res: dict) -> None:
        if res.get("failed"):
            out.lost.append(res)
        else:
            out.rendered += res["pairs"]
        bar.update(res["pairs"])
        el = time.time() - start
        bar.set_postfix(pairs_s=f"{out.rendered / el:.2f}" if el > 0 else "-", lost_units=len(out.lost))

    try:
        if units:
            if cfg.runner == "local":
                run_units_local(settings, units, on_result, in_flight=cfg.in_flight_per_actor)
            else:
                (pool or start_pool(cfg, settings, s3, stack, units=len(units))).run(units, on_result)
    finally:
        bar.close()
    out.elapsed = time.time() - start
    return out


def start_pool(cfg: RenderConfig, settings: WorkerSettings, s3, stack: contextlib.ExitStack,
               units: Optional[int] = None) -> RayPool:
    """Ray (joined or started locally, shut down with ``stack``) and a started actor pool."""
    from infra import failpoints

    stack.enter_context(_ray_session(cfg))
    actors = cfg.actors if units is None else max(1, min(cfg.actors, units))
    pool = RayPool(settings, actors=actors, num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus,
                   in_flight_per_actor=cfg.in_flight_per_actor, max_restarts=cfg.max_restarts,
                   max_task_retries=cfg.max_task_retries, env_vars={**failpoints.armed_env(), **s3.export_env()})
    stack.callback(pool.close)
    return pool


@contextlib.contextmanager
def _ray_session(cfg: RenderConfig) -> Iterator[None]:
    # Ray's default for a new local cluster is token auth, announced on stderr unless the mode is
    # set explicitly: set the same mode explicitly. Ray reads it when first imported, and a user's
    # own setting wins.
    set_auth = not cfg.address and "RAY_AUTH_MODE" not in os.environ and "ray" not in sys.modules
    if set_auth:
        os.environ["RAY_AUTH_MODE"] = "token"
    import ray

    started_here = False
    try:
        if not ray.is_initialized():
            kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=is_verbose(), configure_logging=False)
            if cfg.address:
                kwargs["address"] = cfg.address
            else:
                kwargs["object_store_memory"] = 256 * 1024 * 1024  # actors read shards themselves
                need = cfg.actors * max(cfg.num_cpus, 0.01)
                kwargs["num_cpus"] = max(int(need + 0.999), os.cpu_count() or 1)
            ray.init(**kwargs)
            started_here = True
        yield
    finally:
        if started_here:
            ray.shutdown()
        if set_auth:
            os.environ.pop("RAY_AUTH_MODE", None)
