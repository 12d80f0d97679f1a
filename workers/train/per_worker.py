"""``train_loop_per_worker``: the function Ray Train runs in each worker (``gpvton train`` always
goes through Ray Train); called without a Ray Train session it trains as one plain process, which
tests and benchmarks use."""

from __future__ import annotations

from typing import Any

from .loop import Stage, WorkerContext, run_stage
from .parser_stage import ParserStage
from .tryon_stages import GeneratorStage, WarpStage

STAGES: dict[str, type[Stage]] = {"warp": WarpStage, "generator": GeneratorStage, "parser": ParserStage}


def train_loop_per_worker(config: dict[str, Any]) -> dict[str, Any]:
    """Train the stage ``config["stage"]`` names with the loop config (``pipelines.train.loop_config``)."""
    return run_stage(STAGES[config["stage"]](config, WorkerContext.current()))
