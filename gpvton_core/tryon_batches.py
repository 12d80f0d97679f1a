"""What flows through the cross-product try-on pipeline: inputs, encoded rows and per-pair outputs.

:class:`~gpvton_core.inference.TryOnPipeline` encodes ``GarmentInputs`` / ``PersonInputs`` once
per row into ``GarmentBatch`` / ``PersonBatch`` and renders pairs of their rows into
``TryOnOutputs``. Rows combine with ``PersonInputs.cat`` / ``GarmentInputs.cat`` and
``GarmentBatch.select`` / ``.cat`` (likewise ``PersonBatch``), e.g. to cache encoded rows per id.
Indices may live on the host or the device; host indices reach a CUDA device through pinned
memory, so selecting rows does not make the host wait.

Inputs (all at the working resolution H×W = ``resolution``; float tensors unless stated):

``PersonInputs`` (one row per model photo — for Dress Code one row per (photo, category),
because the preserve masks depend on the garment category):
  * ``image``        B×3×H×W person RGB in [−1,1] ((u8/255 − 0.5)/0.5)
  * ``densepose``    B×1×H×W integer DensePose part index 0..24 (any int / float dtype)
  * ``pose``         B×25×H×W BODY_25 square maps in {−1,+1}
  * ``preserve_warp``  B×1×H×W {0,1} warp-stage preserve mask (GPVTON.md §8.5)
  * ``preserve_gen``   B×1×H×W {0,1} generator-stage preserve mask (VITON-HD: same as warp)
  * ``skin``         B×3 median skin colour in [−1,1] (u8/127.5 − 1), or B×3×H×W
  * ``category``     optional list of B strings; when given, pairs must match the garment's

``GarmentInputs``:
  * ``image``   B×3×H×W in-shop garment RGB in [−1,1], *not* masked (white background = 1)
  * ``mask``    B×1×H×W {0,1} garment mask
  * ``parts``   B×3×H×W {0,1} part masks (person's left / middle / right; GPVTON.md §8.6)
  * ``category`` list of B strings: ``upper`` / ``lower`` / ``dresses`` (VITON-HD: ``upper``)

The part label and the Dress Code type map are derived from ``parts`` and ``category``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from .warp import GarmentFeatures, PersonFeatures

Index = Union[Tensor, Sequence[int]]


def _device_indices(i: Index, device: torch.device) -> Tensor:
    """Indices on ``device``; host indices go through pinned memory (a plain copy to CUDA syncs)."""
    if isinstance(i, Tensor) and i.device == device:
        return i.long()
    return to_device(host_indices(i), device)


def _indices_and_list(i: Index, device: torch.device) -> tuple[Tensor, list[int]]:
    """(indices on ``device``, the same as a list); device indices cost a sync for the list."""
    return _device_indices(i, device), host_indices(i).tolist()


def host_indices(i: Index) -> Tensor:
    """Indices on the host (a device tensor costs one sync here, so callers pass host indices)."""
    return (i.detach().cpu() if isinstance(i, Tensor) else torch.as_tensor(i)).to(torch.long)


def to_device(x: Tensor, device: torch.device) -> Tensor:
    """Host → device without blocking the host (pinned staging on CUDA; a no-op on the CPU)."""
    if device.type != "cuda" or x.device.type != "cpu":
        return x.to(device)
    return x.pin_memory().to(device, non_blocking=True)


@dataclass
class PersonInputs:
    """One row per person photo (Dress Code: per photo and category). See module docstring."""

    image: Tensor
    densepose: Tensor
    pose: Tensor
    preserve_warp: Tensor
    preserve_gen: Tensor
    skin: Tensor
    category: Optional[list[str]] = None

    def __len__(self) -> int:
        return self.image.shape[0]

    @staticmethod
    def cat(items: Sequence["PersonInputs"]) -> "PersonInputs":
        """Rows of several inputs in order (category kept when every item has one)."""
        cats = [x.category for x in items]
        return PersonInputs(*(torch.cat([getattr(x, k) for x in items]) for k in _PERSON_TENSORS),
                            category=None if any(c is None for c in cats) else [c for cs in cats for c in cs])

    def select(self, idx: Index) -> "PersonInputs":
        i = _device_indices(idx, self.image.device)
        return PersonInputs(*(getattr(self, k).index_select(0, i) for k in _PERSON_TENSORS),
                            category=None if self.category is None else [self.category[j] for j in host_indices(idx).tolist()])

    def cond(self) -> Tensor:
        """B×51 warp condition: [DensePose one-hot ×2−1, pose, warp preserve mask]."""
        onehot = F.one_hot(self.densepose[:, 0].long(), 25).permute(0, 3, 1, 2).to(self.pose.dtype)
        return torch.cat((onehot * 2 - 1, self.pose, self.preserve_warp.to(self.pose.dtype)), 1)


_PERSON_TENSORS = ("image", "densepose", "pose", "preserve_warp", "preserve_gen", "skin")


@dataclass
class GarmentInputs:
    """One row per garment. See module docstring."""

    image: Tensor
    mask: Tensor
    parts: Tensor
    category: list[str]

    def __len__(self) -> int:
        return self.image.shape[0]

    @staticmethod
    def cat(items: Sequence["GarmentInputs"]) -> "GarmentInputs":
        return GarmentInputs(*(torch.cat([getattr(x, k) for x in items]) for k in ("image", "mask", "parts")),
                             category=[c for x in items for c in x.category])


@dataclass
class GarmentBatch:
    """Encoded garments plus the full-resolution tensors the assembly needs."""

    features: GarmentFeatures
    parts_warp: Tensor  # B×3×h×w part masks at warp resolution, float32
    clothes: Tensor  # B×3×H×W garment·mask, float32
    parts: Tensor  # B×3×H×W, float32
    part_cls: Tensor  # B×3 long
    extra_cls: Tensor  # B×3 long
    category: list[str]

    def __len__(self) -> int:
        return self.clothes.shape[0]

    def select(self, idx: Index) -> "GarmentBatch":
        i, rows = _indices_and_list(idx, self.clothes.device)
        return GarmentBatch(self.features.select(i), *(getattr(self, k).index_select(0, i) for k in _GARMENT_ROWS),
                            category=[self.category[j] for j in rows])

    @staticmethod
    def cat(items: Sequence["GarmentBatch"]) -> "GarmentBatch":
        return GarmentBatch(GarmentFeatures.cat([x.features for x in items]),
                            *(torch.cat([getattr(x, k) for x in items]) for k in _GARMENT_ROWS),
                            category=[c for x in items for c in x.category])


_GARMENT_ROWS = ("parts_warp", "clothes", "parts", "part_cls", "extra_cls")


@dataclass
class PersonBatch:
    """Encoded persons plus the full-resolution tensors the assembly and generator need."""

    features: PersonFeatures
    preserve_warp_lr: Tensor  # B×1×h×w at warp resolution, float32
    inputs: PersonInputs  # float32, on the pipeline device

    def __len__(self) -> int:
        return len(self.inputs)

    def select(self, idx: Index) -> "PersonBatch":
        i = _device_indices(idx, self.preserve_warp_lr.device)
        return PersonBatch(self.features.select(i), self.preserve_warp_lr.index_select(0, i),
                           self.inputs.select(idx if self.inputs.category is not None else i))

    @staticmethod
    def cat(items: Sequence["PersonBatch"]) -> "PersonBatch":
        return PersonBatch(PersonFeatures.cat([x.features for x in items]),
                           torch.cat([x.preserve_warp_lr for x in items]), PersonInputs.cat([x.inputs for x in items]))


@dataclass
class TryOnOutputs:
    """Per-pair outputs (N rows, float32 unless stated)."""

    tryon: Tensor  # N×3×H×W final image in [−1,1]
    warped_cloth: Tensor  # N×3×H×W warped garment as fed to the generator
    warped_label: Tensor  # N×1×H×W long, 0..6 (VITON-HD) / 0..9 (Dress Code)
    composition_mask: Tensor  # N×1×H×W sigmoid mask × warped garment mask
    rendered: Tensor  # N×3×H×W generator rendering (tanh)
    seg: Tensor  # N×1×H×W long parsing argmax (full resolution)
    warped_part_masks: Tensor  # N×3×H×W part masks E_k warped by their own flows (left, middle, right)
    preserve_gen: Tensor  # N×1×H×W generator-stage preserve mask as applied (Dress Code: × (1 − warped mask))

    @staticmethod
    def cat(items: Sequence["TryOnOutputs"]) -> "TryOnOutputs":
        if len(items) == 1:
            return items[0]
        return TryOnOutputs(**{f.name: torch.cat([getattr(o, f.name) for o in items]) for f in fields(TryOnOutputs)})

    def head(self, n: int) -> "TryOnOutputs":
        """The first ``n`` rows (padded pairs dropped)."""
        if n == len(self.tryon):
            return self
        return TryOnOutputs(**{f.name: getattr(self, f.name)[:n] for f in fields(TryOnOutputs)})


__all__ = ["Index", "PersonInputs", "GarmentInputs", "GarmentBatch", "PersonBatch", "TryOnOutputs",
           "host_indices", "to_device"]
