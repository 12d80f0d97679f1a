"""Set-level try-on metrics: SSIM, LPIPS, FID, KID and parsing mIoU, with one written protocol.

Protocol (what :class:`SetMetrics` computes; ``PROTOCOL`` holds the same facts as data so that
every ``metrics.json`` carries them):

* **Images**: 8-bit sRGB as decoded by Pillow (``convert("RGB")``), as float ``[0, 1]`` tensors
  (N,3,H,W); no gamma linearisation. Paired metrics compare each try-on with its reference at the
  *reference's* resolution (the model photo in the shards: 512×384 or 1024×768); a try-on of
  another size is resized to it (bilinear, antialiased) first.
* **SSIM** — torchmetrics ``structural_similarity_index_measure`` (its SSIM map): Gaussian window
  11, σ 1.5, K1 0.01, K2 0.03, ``data_range=1.0``, per RGB channel, averaged over channels and the
  *valid* region (windows wholly inside the image; the 5-px border is cropped as in Wang et al.
  and scikit-image ``gaussian_weights=True, use_sample_covariance=False``), then over images;
  computed in float64 (float32 moves a photo's SSIM by ~1e-4).
  *Paired only.* Higher is better.
* **LPIPS** — :mod:`gpvton_core.metrics.lpips`, v0.1, AlexNet trunk by default (VGG16 on request),
  inputs mapped to ``[-1, 1]``, at the reference resolution, averaged over images. *Paired only.*
  Lower is better.
* **FID** — torchmetrics ``FrechetInceptionDistance(feature=FIDInceptionV3)``: 2048-d pool features
  of the pt_inception-2015-12-05 network (inputs resized to 299×299 bilinear, scaled to
  ``[-1, 1]``), Fréchet distance in float64 between the real set and the try-on set. Paired:
  reals are the reference photos of the evaluated pairs; unpaired: reals are the distinct model
  photos of the evaluated pairs, each once. Lower is better; unreliable below a few
  thousand images (report N with it).
* **KID** — torchmetrics ``KernelInceptionDistance(feature=..., subset_size=...)`` on the same
  features: cubic polynomial kernel MMD², mean ± std over ``kid_subsets`` random subsets of
  ``min(kid_subset_size, N_real, N_fake)`` images, seeded. Lower is better; unbiased for small N.
* **mIoU** — between predicted label maps (the render's ``*.label.png``) and the reference parsing
  (paired only): per-class intersection and union summed over the whole set, IoU per class, mean
  over the classes that occur (union > 0). Labels ``>= num_classes`` and ``ignore_index`` are
  ignored; ``miou_exclude`` classes (e.g. background 0) still count in the other classes'
  unions but are left out of the mean. Higher is better.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SSIM_WINDOW, SSIM_SIGMA = 11, 1.5

METRICS = ("ssim", "lpips", "fid", "kid", "miou")
PAIRED_ONLY = ("ssim", "lpips", "miou")

PROTOCOL: dict[str, dict[str, Any]] = {
    "images": {
        "colour_space": "8-bit sRGB decoded by Pillow, RGB, float [0,1]; no linearisation",
        "resolution": "the reference photo's resolution (try-ons of another size are resized "
                      "to it, bilinear + antialias)",
    },
    "ssim": {"library": "torchmetrics structural_similarity_index_measure (SSIM map)",
             "window": "gaussian 11, sigma 1.5", "k1": 0.01, "k2": 0.03, "data_range": 1.0,
             "reduction": "mean over channels and the valid region (5-px border cropped), then images",
             "precision": "float64",
             "setting": "paired", "better": "higher"},
    "lpips": {"library": "gpvton_core.metrics.lpips (lpips v0.1 layout)", "input_range": "[-1,1]",
              "resolution": "reference resolution", "setting": "paired", "better": "lower"},
    "fid": {"library": "torchmetrics FrechetInceptionDistance(feature=FIDInceptionV3)",
            "extractor": "pt_inception-2015-12-05 (pytorch-fid layout), 2048-d pool3",
            "input": "bilinear resize to 299x299, [-1,1]", "precision": "float64 statistics",
            "setting": "paired or unpaired", "better": "lower"},
    "kid": {"library": "torchmetrics KernelInceptionDistance(feature=FIDInceptionV3)",
            "kernel": "polynomial degree 3, gamma 1/d, coef 1", "setting": "paired or unpaired",
            "better": "lower"},
    "miou": {"library": "gpvton_core.metrics.set_metrics (per-class I/U summed over the set)",
             "setting": "paired", "better": "higher"},
}


class SharedFeatures(nn.Module):
    """Wraps a feature extractor so that FID and KID fed the same batch run it once.

    torchmetrics calls ``feature(imgs)`` in both metrics' ``update``; the second call with the very
    same tensor returns the cached features.
    """

    def __init__(self, extractor: nn.Module) -> None:
        super().__init__()
        self.extractor = extractor
        self.num_features = int(getattr(extractor, "num_features", 2048))
        self._key: tuple | None = None
        self._value: Tensor | None = None

    def forward(self, imgs: Tensor) -> Tensor:
        try:
            version = imgs._version
        except RuntimeError:  # inference-mode tensors have no version counter (and cannot change)
            version = -1
        key = (imgs.data_ptr(), tuple(imgs.shape), imgs.dtype, version)
        if self._key != key or self._value is None:
            with torch.no_grad():
                self._value = self.extractor(imgs)
            self._key = key
        return self._value

    def clear(self) -> None:
        self._key, self._value = None, None


def to_reference_size(fake: Tensor, real: Tensor) -> Tensor:
    """Resize ``fake`` to ``real``'s H×W (bilinear, antialiased) when they differ."""
    if fake.shape[-2:] == real.shape[-2:]:
        return fake
    return F.interpolate(fake, size=real.shape[-2:], mode="bilinear", align_corners=False,
                         antialias=True).clamp(0, 1)


class SetMetrics:
    """Accumulate a set's metrics batch by batch; :meth:`compute` returns plain numbers.

    ``metrics``: any of :data:`METRICS`. ``inception`` (for fid/kid) and ``lpips`` (for lpips) are
    the extractor modules (loaded by the caller from the user's weight files).
    """

    def __init__(self, metrics: Iterable[str], *, inception: nn.Module | None = None,
                 lpips: nn.Module | None = None, kid_subset_size: int = 1000, kid_subsets: int = 100,
                 num_classes: int = 256, ignore_index: int | None = None,
                 miou_exclude: Sequence[int] = (), seed: int = 0,
                 device: str | torch.device = "cpu") -> None:
        self.metrics = tuple(dict.fromkeys(metrics))
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; choose from {', '.join(METRICS)}")
        if ("fid" in self.metrics or "kid" in self.metrics) and inception is None:
            raise ValueError("fid/kid need an Inception feature extractor")
        if "lpips" in self.metrics and lpips is None:
            raise ValueError("lpips needs an LPIPS network")
        self.seed = seed
        self.device = torch.device(device)
        self.miou_exclude = tuple(int(c) for c in miou_exclude)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.kid_subset_size = kid_subset_size
        self.kid_subsets = kid_subsets
        self._ssim_sum, self._ssim_n = 0.0, 0
        self._lpips = lpips
        self._lpips_sum, self._lpips_n = 0.0, 0
        self._features = SharedFeatures(inception) if inception is not None else None
        self._fid = self._kid = None
        if "fid" in self.metrics:
            from torchmetrics.image.fid import FrechetInceptionDistance

            self._fid = FrechetInceptionDistance(feature=self._features, normalize=True,
                                                 reset_real_features=True)
        if "kid" in self.metrics:
            import warnings

            from torchmetrics.image.kid import KernelInceptionDistance

            with warnings.catch_warnings():  # "saves all features": known, 16 KiB per image
                warnings.simplefilter("ignore", UserWarning)
                self._kid = KernelInceptionDistance(feature=self._features, subsets=kid_subsets,
                                                    subset_size=kid_subset_size, normalize=True)
        for module in (inception, lpips, self._fid, self._kid):
            if module is not None:
                module.to(self.device)
        self._n_real = self._n_fake = 0
        self._inter = torch.zeros(num_classes, dtype=torch.float64)
        self._union = torch.zeros(num_classes, dtype=torch.float64)
        self._miou_n = 0
        self._groups: dict[str, dict[str, list]] = {}

    # --- updates --------------------------------------------------------------------------
    @torch.no_grad()
    def update_pairs(self, fake: Tensor, real: Tensor, groups: Sequence[str] | None = None) -> None:
        """Paired metrics (SSIM, LPIPS) on try-ons vs their references, float [0,1] (N,3,H,W).

        ``groups`` (one name per image, e.g. the garment category) also accumulates the means per
        group (``compute()["by_group"]``) from the same per-image values."""
        fake = to_reference_size(fake.float().to(self.device), real.float().to(self.device))
        real = real.float().to(self.device)
        if groups is not None and len(groups) != fake.shape[0]:
            raise ValueError(f"{len(groups)} group names for {fake.shape[0]} images")
        if "ssim" in self.metrics:
            values = ssim_images(fake, real).double().cpu()
            self._ssim_sum += float(values.sum())
            self._ssim_n += int(values.numel())
            self._add_groups("ssim", groups, values)
        if self._lpips is not None and "lpips" in self.metrics:
            d = self._lpips(fake, real, normalize=True).double().cpu()
            self._lpips_sum += float(d.sum())
            self._lpips_n += int(d.numel())
            self._add_groups("lpips", groups, d)

    def _add_groups(self, metric: str, groups: Sequence[str] | None, values: Tensor) -> None:
        for g, v in zip(groups or (), values.tolist()):
            acc = self._groups.setdefault(str(g), {}).setdefault(metric, [0.0, 0])
            acc[0] += v
            acc[1] += 1

    @torch.no_grad()
    def update_real(self, real: Tensor) -> None:
        """Reference images for FID/KID (float [0,1])."""
        self._update_dist(real.float().to(self.device), True)
        self._n_real += real.shape[0]

    @torch.no_grad()
    def update_fake(self, fake: Tensor) -> None:
        """Try-on images for FID/KID (float [0,1])."""
        self._update_dist(fake.float().to(self.device), False)
        self._n_fake += fake.shape[0]

    def _update_dist(self, imgs: Tensor, real: bool) -> None:
        if self._fid is not None:
            self._fid.update(imgs, real=real)
        if self._kid is not None:
            self._kid.update(imgs, real=real)
        if self._features is not None:
            self._features.clear()

    @torch.no_grad()
    def update_labels(self, pred: Tensor, target: Tensor, group: str | None = None) -> None:
        """Integer label maps (N,H,W) or (H,W); ``pred`` is resized (nearest) to ``target``.
        ``group`` also accumulates a per-group mIoU."""
        if pred.dim() == 2:
            pred, target = pred[None], target[None]
        if pred.shape[-2:] != target.shape[-2:]:
            pred = F.interpolate(pred[:, None].float(), size=target.shape[-2:], mode="nearest")[:, 0]
        pred, target = pred.long().cpu(), target.long().cpu()
        valid = (target >= 0) & (target < self.num_classes) & (pred >= 0) & (pred < self.num_classes)
        if self.ignore_index is not None:
            valid &= target != self.ignore_index
        p, t = pred[valid], target[valid]
        k = self.num_classes
        inter = torch.bincount(t[p == t], minlength=k)[:k].double()
        area_p = torch.bincount(p, minlength=k)[:k].double()
        area_t = torch.bincount(t, minlength=k)[:k].double()
        self._inter += inter
        self._union += area_p + area_t - inter
        self._miou_n += pred.shape[0]
        if group is not None:
            acc = self._groups.setdefault(str(group), {}).setdefault(
                "miou", [torch.zeros_like(self._inter), torch.zeros_like(self._union), 0])
            acc[0] += inter
            acc[1] += area_p + area_t - inter
            acc[2] += pred.shape[0]

    # --- results -------------------------------------------------------------------------
    def compute(self) -> dict[str, Any]:
        """``{metric: {"value": float|None, "n": int, ...}}``; ``value`` None (with ``note``) when
        the set cannot support the metric."""
        out: dict[str, Any] = {}
        if "ssim" in self.metrics:
            out["ssim"] = _mean(self._ssim_sum, self._ssim_n, "no paired images")
        if "lpips" in self.metrics:
            out["lpips"] = _mean(self._lpips_sum, self._lpips_n, "no paired images")
            out["lpips"]["net"] = getattr(self._lpips, "net_name", None)
        if "fid" in self.metrics:
            n = {"n_real": self._n_real, "n_fake": self._n_fake}
            if min(self._n_real, self._n_fake) < 2:
                out["fid"] = {"value": None, **n, "note": "FID needs at least 2 real and 2 try-on images"}
            else:
                out["fid"] = {"value": float(self._fid.compute()), **n}
        if "kid" in self.metrics:
            n = {"n_real": self._n_real, "n_fake": self._n_fake}
            size = min(self.kid_subset_size, self._n_real, self._n_fake)
            if size < 2:
                out["kid"] = {"value": None, **n, "note": "KID needs at least 2 real and 2 try-on images"}
            else:
                self._kid.subset_size = size
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(self.seed)
                    mean, std = self._kid.compute()
                out["kid"] = {"value": float(mean), "std": float(std), "subset_size": size,
                              "subsets": self.kid_subsets, **n}
        if "miou" in self.metrics:
            out["miou"] = self._miou(self._inter, self._union, self._miou_n)
        if self._groups:
            by: dict[str, Any] = {}
            for g, accs in sorted(self._groups.items()):
                by[g] = {}
                for m in ("ssim", "lpips"):
                    if m in accs:
                        by[g][m] = _mean(accs[m][0], accs[m][1], "no paired images")
                if "miou" in accs:
                    by[g]["miou"] = self._miou(*accs["miou"])
            out["by_group"] = by
        return out

    def _miou(self, inter: Tensor, union: Tensor, n: int) -> dict[str, Any]:
        present = union > 0
        for c in self.miou_exclude:
            if 0 <= c < self.num_classes:
                present[c] = False
        if n == 0 or not bool(present.any()):
            return {"value": None, "n": n, "note": "no label maps"}
        iou = inter[present] / union[present]
        labels = torch.nonzero(present).flatten().tolist()
        return {"value": float(iou.mean()), "n": n,
                "per_class": {str(c): float(v) for c, v in zip(labels, iou.tolist())}}


def _mean(total: float, n: int, why: str) -> dict[str, Any]:
    if n == 0:
        return {"value": None, "n": 0, "note": why}
    value = total / n
    return {"value": value if math.isfinite(value) else None, "n": n}


def ssim_images(a: Tensor, b: Tensor) -> Tensor:
    """Per-image SSIM of float [0,1] RGB batches under :data:`PROTOCOL` (shape (N,)).

    torchmetrics computes the SSIM map; we average it over the *valid* region only (windows that
    lie wholly inside the image, as in Wang et al. 2004 and scikit-image). torchmetrics releases
    differ here (some crop the border, 1.9 averages reflect-padded border windows too), so taking
    the full map and cropping it ourselves keeps the number independent of the installed version.
    """
    from torchmetrics.functional.image import structural_similarity_index_measure

    if a.shape != b.shape:
        raise ValueError(f"SSIM needs two batches of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    pad = SSIM_WINDOW // 2
    if min(a.shape[-2:]) <= 2 * pad:
        raise ValueError(f"SSIM needs images larger than {SSIM_WINDOW} px, got {tuple(a.shape[-2:])}")
    # float64: in float32 the E[x²] − μ² variances of flat regions (studio backgrounds) cancel
    # badly enough to move a photo's SSIM by ~1e-4.
    _, full = structural_similarity_index_measure(
        a.double(), b.double(), data_range=1.0, gaussian_kernel=True, sigma=SSIM_SIGMA,
        kernel_size=SSIM_WINDOW, k1=0.01, k2=0.03, reduction="none", return_full_image=True)
    valid = full[..., pad:-pad, pad:-pad]
    return valid.reshape(valid.shape[0], -1).mean(-1)


def parse_metric_list(text: str | Sequence[str]) -> tuple[str, ...]:
    items = [t.strip().lower() for t in (text.split(",") if isinstance(text, str) else text)]
    items = [t for t in items if t]
    unknown = [t for t in items if t not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {', '.join(METRICS)}")
    return tuple(dict.fromkeys(items))
