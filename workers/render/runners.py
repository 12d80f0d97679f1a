"""Running a job's units: in process (:func:`run_units_local`) or on a pool of Ray actors (:class:`RayPool`).

Both share one retry policy, :class:`UnitAttempts`: a unit whose processing raises is tried again
up to ``unit_attempts`` times in all, then reported as lost (``failed``, with the error) and left
without a done marker, so the next run picks it up. ``on_result`` is called on the caller's
thread, in completion order, with each unit's summary or loss report.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import asdict
from typing import Any, Callable, Optional

from workers.render.settings import WorkerSettings

log = logging.getLogger(__name__)

OnResult = Callable[[dict], None]


class UnitAttempts:
    """Owns "attempt a unit, retry a failure, report a lost unit" for every runner."""

    def __init__(self, limit: int):
        self.limit = limit
        self._tries: dict[int, int] = {}
        self._lock = threading.Lock()   # the local runner attempts units on several threads

    def begin(self, unit: dict) -> None:
        """Count an attempt of ``unit`` (before it is handed to a processor)."""
        uid = int(unit["unit_id"])
        with self._lock:
            self._tries[uid] = self._tries.get(uid, 0) + 1

    def failed(self, unit: dict, exc: BaseException) -> Optional[dict]:
        """None when the unit gets another attempt; else its loss report for ``on_result``."""
        uid = int(unit["unit_id"])
        with self._lock:
            tries = self._tries.get(uid, 0)
        if tries < self.limit:
            log.warning("unit %s attempt %d/%d failed (%s); trying again", uid, tries, self.limit, exc)
            return None
        log.error("unit %s failed (attempt %d/%d): %s", uid, tries, self.limit, exc)
        return {"unit_id": uid, "pairs": len(unit["pairs"]), "failed": True,
                "error": f"{type(exc).__name__}: {str(exc)[:500]}"}


def run_units_local(settings: WorkerSettings, units: list[dict], on_result: OnResult,
                    unit_attempts: int = 2, in_flight: int = 2) -> None:
    """In-process runner: one processor, up to ``in_flight`` units at once on worker threads.

    As in a Ray actor, the next unit is read and decoded while the current one is on the networks
    (the processor takes one unit at a time there), so a laptop or a single GPU is not left idle
    during decoding, scoring and writes.
    """
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    from workers.render.unit import UnitProcessor

    proc = UnitProcessor(settings)
    attempts = UnitAttempts(unit_attempts)

    def attempt(u: dict) -> dict:
        while True:
            attempts.begin(u)
            try:
                return proc.process_unit(u)
            except Exception as exc:  # noqa: BLE001 - the unit stays unmarked for the next run
                lost = attempts.failed(u, exc)
                if lost is not None:
                    return lost

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
    fails goes through :class:`UnitAttempts`. An actor that is dead for good (restarts exhausted)
    is replaced by a fresh one. Units carry their shard part files (``unit["files"]``); an actor
    gets only small constructor arguments, so a restarted actor needs nothing from the object store.
    """

    def __init__(self, settings: WorkerSettings, *, actors: int = 1, num_cpus: float = 1.0, num_gpus: float = 0.0,
                 in_flight_per_actor: int = 2, max_restarts: int = 3, max_task_retries: int = 3,
                 env_vars: Optional[dict[str, str]] = None, unit_attempts: int = 2):
        import ray

        from workers.render.actor import RenderActor

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

    def _new_actor(self, worker: int) -> Any:
        return self._actor.remote(self._settings, worker)

    def run(self, units: list[dict], on_result: OnResult) -> None:
        import ray
        from ray.exceptions import RayActorError

        pool = self.pool
        pending = deque(units)
        inflight: dict[Any, tuple[int, dict, Any]] = {}   # ref → (actor slot, unit, actor handle)
        load = [0] * len(pool)
        attempts = UnitAttempts(self.unit_attempts)

        def fill() -> None:
            for a in range(len(pool)):
                while pending and takes_unit(load, a, len(pending), self.in_flight_per_actor):
                    u = pending.popleft()
                    attempts.begin(u)
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
                    res = attempts.failed(u, exc)
                    if res is None:
                        pending.append(u)
                        continue
                on_result(res)
            fill()

    def close(self) -> None:
        import ray

        for a in self.pool:
            try:
                ray.kill(a)
            except Exception:  # noqa: BLE001
                pass
