"""``gpvton render``: every garment onto every suitable model photo, resumable, on a Ray pool.

    gpvton render --config job.yaml [--shards URL] [--output URL]
                  (--warp-checkpoint F --generator-checkpoint F | --random-weights)
                  [--resolution 512|1024] [--batch-size N] [--actors N] [--device cpu|cuda|auto]
                  [--precision auto|fp32|bf16|fp16]
                  [--format jpg|png|webp] [--runner ray|local] [--address ray://...] [--force]
                  [--set key.sub=value ...]

A job file (every key optional except shards/output and the checkpoints)::

    shards: s3://catalogue/shards-512          # gpvton preprocess output
    output: s3://renders/2026-11-25            # the job root (JOB below)
    pairing: cross                             # cross | pairs (+ pairs_file) | paired
    persons: {include: ["*"], exclude: ["test_*"]}
    garments: {include: ["SS26-*"]}
    categories: [upper, lower, dresses]
    checkpoints: {warp: /w/warp_dresscode.pth, generator: /w/gen_dresscode_512.pth}
    random_weights: false                      # true: no checkpoints, random networks (pipeline checks)
    resolution: 512                            # must match the shards (1024: warp at half res)
    batch_size: 8
    unit_size: 64                              # pairs per resumable unit
    runner: ray                                # ray | local (in process)
    actors: 4                                  # one per GPU
    num_gpus: 1
    num_cpus: 4
    device: auto                               # cuda when the actor has a GPU
    precision: auto                            # bf16 convs where native (else fp32) | fp32 | bf16 | fp16
    output_format: {format: jpg, quality: 92, debug: false}
    thresholds: {warp_miou: {warn: 0.5, fail: 0.25}}
    max_unrendered_fraction: 0.02              # render exits 1 above this: (error + missing) / planned
    max_failed_fraction: 0.05                  # the QA gate (gpvton report): (fail + error + missing) / planned
    address: null                              # ray://head:10001 to join a cluster
    s3: {endpoint_url: null}                   # else the AWS environment

Modules: :mod:`~pipelines.render.config` (the job file), :mod:`~pipelines.render.cli` (flags),
:mod:`~pipelines.render.plan` (catalogue → deterministic units, persisted to
``JOB/plan/units.parquet``), :mod:`~pipelines.render.delta` (the diff against the index),
:mod:`~pipelines.render.model` (checkpoints or random weights, the model key),
:mod:`~pipelines.render.runtime` (device, precision, compile), :mod:`~pipelines.render.dispatch`
(the units on :mod:`workers.render`, in process or on Ray), :mod:`~pipelines.render.job` (the
job's steps: resume, dry run, commit), :mod:`~pipelines.render.commit` (the index merge),
:mod:`~pipelines.render.summary` (``JOB/summary.json`` and the last line; the counts are
:class:`pipelines.outcome.Outcome`'s, shared with the report).
"""

from pipelines.render.cli import add_arguments, config_from_args, run
from pipelines.render.config import Checkpoints, IdFilter, ModelConfig, OutputConfig, RenderConfig, ThresholdConfig
from pipelines.render.job import JobResult, run_job, s3_settings
from pipelines.render.model import RANDOM_NOTE, uses_random_weights
from pipelines.render.plan import detect_variant, plan_digest, plan_units, read_catalogue, units_table
from pipelines.render.summary import summarise

__all__ = ["Checkpoints", "IdFilter", "JobResult", "ModelConfig", "OutputConfig", "RANDOM_NOTE", "RenderConfig",
           "ThresholdConfig", "add_arguments", "config_from_args", "detect_variant",
           "plan_digest", "plan_units", "read_catalogue", "run", "run_job", "s3_settings",
           "summarise", "units_table", "uses_random_weights"]
