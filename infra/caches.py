"""Local caches a worker keeps between jobs on one host."""

from __future__ import annotations

import os


def use_inductor_cache(path: str) -> None:
    """Keep ``torch.compile``'s kernels under ``path``: later actors and runs on this host reuse them
    instead of compiling again (minutes per shape). Inductor reads the variable when it compiles."""
    os.makedirs(path, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = path
