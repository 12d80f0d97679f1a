"""The worker's two networks: from their checkpoints (fetched through :mod:`infra.models`) or random."""

from __future__ import annotations

from typing import TYPE_CHECKING

from workers.render.settings import WorkerSettings, s3_settings

if TYPE_CHECKING:
    from torch import nn


def build_models(s: WorkerSettings) -> tuple[nn.Module, nn.Module]:
    """(warp, generator) in eval mode on ``s.device``, float32.

    A checkpoint is fetched once per worker into the sha256-keyed cache of :mod:`infra.models`
    and must hold the network its role needs (an official ``.pth``, kind told by its keys, or our
    safetensors). Without checkpoints both networks are random, seeded so every worker agrees.
    """
    import torch

    from gpvton_core.checkpoints import build_from_checkpoint
    from gpvton_core.generator import TryOnGenerator
    from gpvton_core.warp import LFGPWarp
    from infra.models import fetch_model

    torch.manual_seed(s.seed)  # random-init networks must be identical in every worker
    nets = []
    for kind, path in (("warp", s.warp_checkpoint), ("generator", s.generator_checkpoint)):
        if path:
            net, meta = build_from_checkpoint(fetch_model(path, s3_settings(s.s3)).path)
            want = "generator" if kind == "generator" else f"warp_{s.variant}"
            if meta.get("kind") != want:
                raise ValueError(f"{kind} checkpoint {path} holds a {meta.get('kind')!r} network, expected {want!r}")
        else:
            net = LFGPWarp(s.variant, s.width) if kind == "warp" else TryOnGenerator(s.width)
        nets.append(net)
    # float32 here: TryOnPipeline puts each convolution group in its dtype (gpvton_core.precision)
    warp, generator = (n.eval().to(device=s.device, dtype=torch.float32) for n in nets)
    return warp, generator
