"""Device → host copies that do not stop the host: the next batch is launched while this one copies.

A plain ``tensor.cpu()`` waits for every kernel queued before it, so the host launches nothing
while the GPU finishes the batch and copies it out; the GPU then idles while the host encodes,
scores and launches the next batch. :func:`copy_to_host` queues the copies into pinned host
memory (``non_blocking``) behind a CUDA event and returns at once; :meth:`HostCopy.wait` blocks
only when the results are needed — after the next batch has been queued. On the CPU it is the
identity (the same tensors, nothing copied), so both paths give identical values.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


class HostCopy:
    """Tensors on their way to host memory; :meth:`wait` returns them once they are there."""

    def __init__(self, tensors: dict[str, Optional[Tensor]]) -> None:
        self._out: dict[str, Optional[Tensor]] = {}
        self._event: Optional[torch.cuda.Event] = None
        for k, t in tensors.items():
            if t is None or t.device.type == "cpu":
                self._out[k] = t
                continue
            buf = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
            buf.copy_(t, non_blocking=True)
            self._out[k] = buf
            if self._event is None and t.device.type == "cuda":
                self._event = torch.cuda.Event()
        if self._event is not None:
            self._event.record()   # after every copy above, on the current stream

    def ready(self) -> bool:
        return self._event is None or self._event.query()

    def wait(self) -> dict[str, Optional[Tensor]]:
        if self._event is not None:
            self._event.synchronize()
        return self._out


def copy_to_host(tensors: dict[str, Optional[Tensor]]) -> HostCopy:
    """Queue the copies of ``tensors`` (None entries pass through) and return without waiting."""
    return HostCopy(tensors)


__all__ = ["HostCopy", "copy_to_host"]
