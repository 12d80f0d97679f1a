"""What a render worker is told (plain data, pickled into Ray actors) and what it derives from it."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from infra import failpoints

if TYPE_CHECKING:
    from infra.storage import S3Settings, Storage


@dataclass
class WorkerSettings:
    """Everything a worker needs, plain data: a restarted Ray actor rebuilds itself from it alone."""

    job_root: str
    shards_root: str
    variant: str
    shard_size: tuple[int, int]          # (H, W) of the shard images: the render (generator) size
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


def s3_settings(s3: dict[str, Optional[str]]) -> Optional[S3Settings]:
    """The settings' plain S3 fields as :class:`infra.storage.S3Settings` (None: the AWS environment)."""
    from infra.storage import S3Settings

    return S3Settings(**s3) if s3 else None


def job_storage(root: str, s3: dict[str, Optional[str]]) -> Storage:
    """The job folder's storage; its filesystem goes through :mod:`infra.failpoints` (inert unless armed)."""
    from infra.storage import Storage

    st = Storage(root, s3_settings(s3))
    st.fs = failpoints.wrap_filesystem(st.fs)
    return st


def writer_threads(requested: int = 0) -> int:
    """Threads that encode and write images: JPEG encoding releases the GIL, so one per core."""
    if requested > 0:
        return requested
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:   # not Linux
        cores = os.cpu_count() or 4
    return max(4, min(16, cores))
