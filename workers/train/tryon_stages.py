"""The try-on stages (GPVTON.md §9): the warping module (``warp``) and the try-on generator
(``generator``, on the warps of a frozen, trained warper), each with its PatchGAN discriminator.

Both train on the shards' pairs (:func:`~.data.list_pairs`) as stored: no augmentation (§8.2; a
flip would also have to swap the left/right labels). The warp's only per-step randomness is DGT's
FULL/SHORT choice, drawn from the loop's (seed, step, rank) generator. With several workers the
networks are DDP-wrapped (gloo on CPU).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import Tensor, nn

from gpvton_core.training import dgt
from gpvton_core.training import losses as L
from gpvton_core.training.batch import collate
from gpvton_core.training.discriminator import SpectralDiscriminator
from infra.models import fetch_model
from infra.storage import S3Settings

from .data import decode_pair, list_pairs
from .loop import Stage

LOG_FIELDS_WARP = ("l1", "vgg", "mask", "smooth2", "full_l1", "full_mask", "attention", "parsing",
                   "smooth1", "gan")
LOG_FIELDS_GEN = ("l1_tryon", "l1_rendered", "mask", "vgg_tryon", "vgg_rendered", "gan")


def model_file(url: str, s3: Optional[dict] = None) -> str:
    """A model file (warp checkpoint, VGG weights) by URL, fetched once into the sha256-keyed cache."""
    return fetch_model(url, S3Settings(**s3) if s3 else None).path


class TryOnStage(Stage):
    """What warp and generator share: the pairs, the discriminator, the VGG-19 terms, Adam (β1 0.5
    by default) on the network and on the discriminator, and the step (network, then discriminator)."""

    examples_key = "pairs"
    log_fields: tuple[str, ...] = ()
    disc_channels = 0

    def load_examples(self) -> int:
        c, variant = self.c, self.c["variant"]
        pairs, self._garments = list_pairs(c["shards"], variant, self.s3, c.get("categories"))
        if c.get("max_pairs"):
            pairs = pairs[: int(c["max_pairs"])]
        if not pairs:
            raise ValueError(f"{c['shards']}: no training pairs (persons with a worn_garment_id"
                             f"{' and an upper garment' if variant == 'vitonhd' else ''})")
        self._pairs, self._cache = pairs, {}
        return len(pairs)

    def _sample(self, i: int) -> dict[str, Any]:
        if i not in self._cache:
            self._cache[i] = decode_pair(self._pairs[i], self._garments, self.size, self.c["variant"])
        return self._cache[i]

    @abstractmethod
    def _network(self) -> nn.Module:
        """The trained network (built first: the discriminator's input size may depend on it)."""

    def build(self) -> None:
        c = self.c
        width = float(c["model_width"])
        self.net = self._network()
        self.disc: Optional[nn.Module] = (SpectralDiscriminator(self.disc_channels, float(c.get("disc_width") or width))
                                          if c.get("gan", True) else None)
        self.vgg = None
        if c.get("perceptual", True):
            from gpvton_core.training.vgg import VGG19Features, VGGLoss

            features = VGG19Features(normalize=bool(c.get("vgg_normalize", True)))
            self.vgg = VGGLoss(features.load_weights(model_file(c["vgg_weights"], self.s3)))
        betas = (float(c["beta1"]) if c.get("beta1") is not None else 0.5, 0.999)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=float(c["lr"]), betas=betas)
        self.opt_d = (torch.optim.Adam(self.disc.parameters(), lr=float(c["lr_d"]), betas=betas)
                      if self.disc is not None else None)

    def optimizers(self) -> dict[str, tuple[Optional[torch.optim.Optimizer], float]]:
        return {"opt": (self.opt, float(self.c["lr"])), "opt_d": (self.opt_d, float(self.c["lr_d"]))}

    def extra_networks(self) -> dict[str, tuple[Optional[nn.Module], dict]]:
        return {"disc": (self.disc, {"kind": "discriminator"})}

    def meta(self) -> dict[str, Any]:
        return {"variant": self.c["variant"]}

    def distribute(self) -> None:
        if self.ctx.in_ray and self.ctx.world > 1:
            self.net = self.ctx.prepare(self.net, find_unused_parameters=True)
            if self.disc is not None:
                self.disc = self.ctx.prepare(self.disc)

    @abstractmethod
    def _losses(self, b: dict[str, Any], epoch: int,
                rng: np.random.Generator) -> tuple[dict, dict[str, Tensor], Callable[[], Tensor]]:
        """(log fields, the network's loss terms, the discriminator's loss on this step's fakes)."""

    def train_step(self, idx: list[int], epoch: int, rng: np.random.Generator) -> tuple[dict, dict[str, Tensor]]:
        b = collate([self._sample(i) for i in idx])
        fields, terms, disc_loss = self._losses(b, epoch, rng)
        if self.disc is not None:
            self.disc.requires_grad_(False)
        self.opt.zero_grad(set_to_none=True)
        terms["total"].backward()
        self.opt.step()
        d_loss = torch.zeros(())
        if self.disc is not None and self.opt_d is not None:
            self.disc.requires_grad_(True)
            self.opt_d.zero_grad(set_to_none=True)
            d_loss = disc_loss()
            d_loss.backward()
            self.opt_d.step()
        return fields, {"total": terms["total"], **{k: terms[k] for k in self.log_fields}, "d_loss": d_loss}


class WarpStage(TryOnStage):
    """The LFGP warping module in training mode, with DGT (§9.1) once ``mask_epoch`` has passed."""

    name = "warp"
    log_fields = LOG_FIELDS_WARP

    def _network(self) -> nn.Module:
        from gpvton_core.warp import NUM_SEG_CLASSES, LFGPWarp

        variant = self.c["variant"]
        self.disc_channels = 51 + 1 + NUM_SEG_CLASSES[variant]
        return LFGPWarp(variant, float(self.c["model_width"]))

    def _dgt_masks(self, b: dict[str, Any], epoch: int,
                   rng: np.random.Generator) -> tuple[bool, Optional[Tensor], Optional[Tensor]]:
        """(DGT on, part / full truncation masks or None)."""
        c, variant = self.c, self.c["variant"]
        if not (bool(c.get("dgt", True)) and dgt.active(epoch, int(c.get("mask_epoch", 70)))):
            return False, None, None
        choices = [dgt.choose_region(float(r), variant, cat, rng, bool(c.get("dynamic_mask", True)))
                   for r, cat in zip(b["pc_ratio"].tolist(), b["category"])]
        pm1, pm2 = dgt.loss_masks(b, choices, variant)
        t_parts, t_full = dgt.truncation_masks(b, pm1, pm2, variant)
        return True, t_parts, t_full

    def _losses(self, b: dict[str, Any], epoch: int,
                rng: np.random.Generator) -> tuple[dict, dict[str, Tensor], Callable[[], Tensor]]:
        variant = self.c["variant"]
        dgt_on, t_parts, t_full = self._dgt_masks(b, epoch, rng)
        parts = b["garment_parts"]
        args = [b["cond"], b["garment"], b["garment_mask"], b["garment_input"][:, 3:4],
                *[b["garment"] * parts[:, k] for k in range(3)], *[parts[:, k] for k in range(3)], b["preserve"]]
        if variant == "dresscode":
            args.append(b["type_map"])
        o = self.net(*args, mode="training")
        terms = L.warp_losses(o, b, variant, t_parts=t_parts, t_full=t_full, vgg=self.vgg, disc=self.disc)
        fake = o.segs[-1]
        return ({"dgt": int(dgt_on)}, terms,
                lambda: L.warp_disc_loss(self.disc, b, fake, len(L.CE_WEIGHTS[variant])))


class GeneratorStage(TryOnStage):
    """The Res-UNet generator on a frozen warper's test-time warps (``warp_checkpoint``: ours or an
    official ``.pth``), as ``gpvton render`` assembles them (1024 path included)."""

    name = "generator"
    log_fields = LOG_FIELDS_GEN
    disc_channels = 39

    def _network(self) -> nn.Module:
        from gpvton_core.checkpoints import build_from_checkpoint
        from gpvton_core.generator import TryOnGenerator
        from gpvton_core.warp import LFGPWarp

        net = TryOnGenerator(float(self.c["model_width"]))
        url = self.c["warp_checkpoint"]
        warp, _ = build_from_checkpoint(model_file(url, self.s3))
        if not isinstance(warp, LFGPWarp):
            raise ValueError(f"--warp-checkpoint {url} is not a warp network")
        self.warp_net = warp.eval().requires_grad_(False)
        return net

    def _losses(self, b: dict[str, Any], epoch: int,
                rng: np.random.Generator) -> tuple[dict, dict[str, Tensor], Callable[[], Tensor]]:
        from gpvton_core.training.generator_forward import generator_forward

        x, rendered, tryon, m, real = generator_forward(self.net, self.warp_net, b, self.c["variant"])
        terms = L.generator_losses(x, rendered, tryon, m, real, vgg=self.vgg, disc=self.disc)
        return {}, terms, lambda: L.generator_disc_loss(self.disc, x, rendered, real)
