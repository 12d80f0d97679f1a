"""The render job's configuration: ``RenderConfig`` and its sections (YAML/TOML/JSON + ``--set``)."""

from __future__ import annotations

import fnmatch
from typing import Any, Literal, Optional

from pydantic import Field, field_validator, model_validator

from gpvton_core.conditions.labels import CATEGORIES, Category
from pipelines.config import S3Config, StorageURL, StrictModel


class IdFilter(StrictModel):
    include: list[str] = Field(default_factory=lambda: ["*"], description="glob patterns to keep")
    exclude: list[str] = Field(default_factory=list, description="glob patterns to drop")

    def keep(self, item_id: str) -> bool:
        return (any(fnmatch.fnmatchcase(item_id, p) for p in self.include)
                and not any(fnmatch.fnmatchcase(item_id, p) for p in self.exclude))


class Checkpoints(StrictModel):
    warp: Optional[StorageURL] = None        # official .pth or our .safetensors
    generator: Optional[StorageURL] = None


class ModelConfig(StrictModel):
    variant: Literal["auto", "vitonhd", "dresscode"] = "auto"
    width: Optional[float] = Field(None, gt=0, le=1, description="network width of random-init nets")
    seed: int = 0


class OutputConfig(StrictModel):
    format: Literal["jpg", "png", "webp"] = "jpg"
    quality: int = Field(92, ge=1, le=100)
    debug: bool = False  # also write warped garment + label map under JOB/debug/
    frame: Literal["working", "original"] = Field(
        "working", description="original: the try-on put back into the original photo at its resolution "
                               "(read from the shards' source_uri; framed photos through their frame_box)")


class ThresholdConfig(StrictModel):
    warn: float
    fail: float

    @model_validator(mode="after")
    def _order(self) -> "ThresholdConfig":
        if self.fail > self.warn:
            raise ValueError(f"fail ({self.fail}) must be <= warn ({self.warn})")
        return self


def _default_thresholds() -> dict[str, ThresholdConfig]:
    from gpvton_core.scores import DEFAULT_THRESHOLDS

    return {k: ThresholdConfig(warn=v.warn, fail=v.fail) for k, v in DEFAULT_THRESHOLDS.items()}


class RenderConfig(StrictModel):
    shards: StorageURL = Field(..., description="condition shards URL (gpvton preprocess output)")
    output: StorageURL = Field(..., description="job URL (local folder or s3://bucket/prefix)")
    pairing: Literal["cross", "pairs", "paired"] = "cross"
    pairs_file: Optional[StorageURL] = None  # pairing=pairs: lines 'person_id garment_id' (or CSV)
    persons: IdFilter = Field(default_factory=IdFilter)
    garments: IdFilter = Field(default_factory=IdFilter)
    categories: list[Category] = Field(default_factory=lambda: list(CATEGORIES))
    checkpoints: Checkpoints = Field(default_factory=Checkpoints)
    random_weights: bool = Field(False, description="render with randomly initialised networks (no checkpoints)")
    model: ModelConfig = Field(default_factory=ModelConfig)
    resolution: Optional[Literal[128, 256, 512, 1024]] = None  # None: the shards' height; 128/256: tests
    batch_size: int = Field(4, ge=1)
    unit_size: int = Field(64, ge=1, description="pairs per unit (the resumable grain)")
    runner: Literal["ray", "local"] = "ray"
    actors: int = Field(1, ge=1)
    num_cpus: float = Field(1.0, ge=0)
    num_gpus: float = Field(0.0, ge=0)
    in_flight_per_actor: int = Field(
        2, ge=1, description="units a worker (Ray actor or the local runner) holds at once: one is read and "
                             "decoded while another is on the networks")
    max_restarts: int = Field(3, ge=0)
    max_task_retries: int = Field(3, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    cudnn_benchmark: bool = Field(
        False, description="CUDA: let cuDNN time its algorithms for every new input shape (a one-off cost "
                           "per shape, repaid on long jobs)")
    compile: Literal["auto", "off", "on"] = Field(
        "auto", description="torch.compile the flow decoder and the generator at fixed shapes (every call "
                            "batch_size pairs): once per shape and actor, kernels cached per host. auto: on for "
                            "CUDA when the run renders at least compile_min_pairs per actor, off on the CPU (a "
                            "tiny network took minutes to compile there); recorded in job.json")
    compile_mode: Literal["reduce-overhead", "default", "max-autotune-no-cudagraphs"] = Field(
        "reduce-overhead", description="inductor mode when compiling on CUDA (reduce-overhead: CUDA graphs); "
                                       "the CPU always uses default")
    compile_min_pairs: int = Field(
        10000, ge=0, description="compile auto: pairs per actor that repay the warm-up (H200: ≈70 s to compile "
                                 "cold, ≈5 ms saved per pair)")
    compile_cache: Optional[str] = Field(
        "~/.cache/gpvton/inductor", description="local folder for inductor's compiled kernels on each host "
                                                 "(TORCHINDUCTOR_CACHE_DIR), shared by actors and runs; "
                                                 "null: inductor's default")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 convolutions (flow arithmetic in fp32) where the device computes bf16 "
                            "natively, fp32 elsewhere; the choice and its reason are written into job.json")
    output_format: OutputConfig = Field(default_factory=OutputConfig)
    composite: Literal["paste-back", "official"] = Field(
        "paste-back", description="paste-back: the photo's own pixels wherever the preserve region or the "
                                  "background must not change (feathered); official: every pixel from the generator")
    thresholds: dict[str, ThresholdConfig] = Field(default_factory=_default_thresholds)
    max_unrendered_fraction: float = Field(0.05, ge=0, le=1, description="render exits 1 above this")
    max_failed_fraction: float = Field(0.05, ge=0, le=1, description="the QA gate: gpvton report exits 1 above this")
    address: Optional[str] = None  # Ray address; None = start a local Ray
    s3: S3Config = Field(default_factory=S3Config)
    force: bool = False
    dry_run: bool = Field(False, description="plan and diff against the output's index, print what a run would "
                                             "do, write nothing")
    retry_errors: bool = Field(False, description="a rerun also re-attempts deterministic error rows (bad input, "
                                                  "non-finite output); transient ones are always re-attempted")
    lock_ttl_s: float = Field(120.0, gt=0, description="the job lock (JOB/lock.json) expires this long after the "
                                                       "last heartbeat of a run that died without releasing it")
    progress: bool = True

    @model_validator(mode="before")
    @classmethod
    def _removed_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and "fail_flags" in data:
            raise ValueError("fail_flags was removed: render exits 1 when (error + missing) / planned exceeds "
                             "max_unrendered_fraction; QA fails are gated by 'gpvton report' with "
                             "max_failed_fraction (README, Jobs)")
        return data

    @field_validator("compile", mode="before")
    @classmethod
    def _compile_bool(cls, v: Any) -> Any:
        """YAML reads a bare ``on`` / ``off`` as a boolean."""
        return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v

    @field_validator("thresholds")
    @classmethod
    def _known_scores(cls, v: dict[str, ThresholdConfig]) -> dict[str, ThresholdConfig]:
        from gpvton_core.scores import SCORE_NAMES

        unknown = sorted(set(v) - set(SCORE_NAMES))
        if unknown:
            raise ValueError(f"unknown score(s) {unknown}; known: {list(SCORE_NAMES)}")
        return v

    @model_validator(mode="after")
    def _check(self) -> "RenderConfig":
        if self.pairing == "pairs" and not self.pairs_file:
            raise ValueError("pairing 'pairs' needs pairs_file (lines 'person_id garment_id')")
        if self.num_gpus > 0 and self.device == "cpu":
            raise ValueError("num_gpus > 0 with device 'cpu': set device: cuda (or auto)")
        return self
