"""The unit processor in a Ray actor, whose log records are kept in the job folder.

The worker's records go to ``JOB/logs/worker-NN-pPID.log`` (rewritten after every unit, so object
stores work too), not only to Ray's session folder, which goes away with the cluster.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from workers.render.settings import WorkerSettings, job_storage
from workers.render.unit import UnitProcessor

log = logging.getLogger(__name__)


def worker_log_key(worker: int, pid: int) -> str:
    return f"logs/worker-{worker:02d}-p{pid}.log"


def _log_to_job_and_stderr(s: WorkerSettings, worker: int) -> Any:
    """Route this process's records to the worker's job log and to stderr; returns the job log handler."""
    from infra.joblog import JobLogHandler

    handler = JobLogHandler(job_storage(s.job_root, s.s3), worker_log_key(worker, os.getpid()), level=s.log_level)
    root = logging.getLogger()
    root.addHandler(handler)
    # stderr too: Ray keeps it in its session folder, or streams it to the driver (gpvton -v)
    console = logging.StreamHandler()
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    console.setLevel(s.log_level)
    root.addHandler(console)
    root.setLevel(min(root.level or logging.WARNING, s.log_level))
    logging.getLogger("gpvton").setLevel(s.log_level)
    logging.captureWarnings(True)
    return handler


class RenderActor(UnitProcessor):
    """A :class:`UnitProcessor` in a Ray actor, whose log records are kept under ``JOB/logs/``."""

    def __init__(self, settings: dict, worker: int):
        s = WorkerSettings(**settings)
        self._log = _log_to_job_and_stderr(s, worker)
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
