"""LFGP warping module, VITON-HD and Dress Code variants (GPVTON.md §3, §6.1–6.2).

One class, :class:`LFGPWarp`, with ``variant="vitonhd"|"dresscode"``. Its state-dict keys are
exactly the official ones at any ``width``; ``width`` < 1 scales every channel count so tests
and demos can run the same code on small networks.

Split API (used by the cross-product inference path; the garment side and the person side are
encoded once, the decoder runs per pair)::

    gf = model.encode_garment(garment_input, type_map)        # garment_input = cat[RGB·mask, label]
    pf = model.encode_person(cond)                            # B×51 person condition
    out = model.decode(gf.select(gi), pf.select(pi), part_masks, preserve, mode="inference")
    out.last_flow   # 3B×2×H×W, batch order [left; middle; right]
    out.seg_logits  # B×C×H×W (C = 7 VITON-HD, 10 Dress Code), tanh-bounded

``mode="inference"`` (:meth:`FlowDecoder.infer`) computes only ``last_flow`` and the final
parsing: the attention head, the full-garment warps, the warped part images, the
second-difference filters and the parsing branch of levels 0–3 are skipped (they only feed
training losses). It also reorders linear operations so that less is computed per pair
(identical in exact arithmetic, float32 rounding apart):

* the person half of each refine head's and of the parsing head's first convolution,
  ``conv(cat(g, p)) = conv_g(g) + conv_p(p)``, is computed once per person, not per pair;
* the first level's correlation is computed once, not once per part (its garment input is
  not warped yet);
* garment features are gathered (:func:`flow.sample_rows`) for every part and pair straight
  from the garment rows, channels-last, instead of being repeated and resampled with ``grid_sample``;
* the last level's up2 → warp → mask → concat → 1×1 conv becomes the 1×1 conv's per-part
  slices at half resolution, gathered with the ×2 upsampling and the masks folded into the
  sampling weights (:func:`flow.sample_rows_up2`).

``mode="training"`` fills every field of :class:`WarpOutputs` (the official 11 outputs) with
the official operations. ``forward`` takes the official 11 (12 for Dress Code) arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import flow as fl
from .blocks import (
    FPN_CHANNELS,
    LRELU_SLOPE,
    FeatureEncoder,
    PartFusion,
    RefinePyramid,
    head,
    scaled,
)
from .correlation import NUM_DISPLACEMENTS, correlation

Variant = Literal["vitonhd", "dresscode"]
Mode = Literal["inference", "training"]
Index = Union[Tensor, Sequence[int]]

#: parsing classes per variant (GPVTON.md §3.6, §3.7)
NUM_SEG_CLASSES = {"vitonhd": 7, "dresscode": 10}
GARMENT_IN = 4  # RGB·mask + part label
PERSON_IN = 51  # densepose one-hot ×2−1 (25) + pose (25) + preserve (1)
NUM_LEVELS = 5


def _index(idx: Index, device: torch.device) -> Tensor:
    return torch.as_tensor(idx, dtype=torch.long, device=device)


@dataclass
class GarmentFeatures:
    """Garment-side FPN pyramid (P0 stride 2 … P4 stride 32) and the Dress Code type map."""

    pyramid: list[Tensor]
    type_map: Optional[Tensor] = None  # B×1×H×W (Dress Code), else None

    def __len__(self) -> int:
        return self.pyramid[0].shape[0]

    def select(self, idx: Index) -> "GarmentFeatures":
        """Rows ``idx`` (repeats allowed), e.g. the garment of every pair of a cross product."""
        i = _index(idx, self.pyramid[0].device)
        return GarmentFeatures([p.index_select(0, i) for p in self.pyramid],
                               None if self.type_map is None else self.type_map.index_select(0, i))

    @staticmethod
    def cat(items: Sequence["GarmentFeatures"]) -> "GarmentFeatures":
        tm = [g.type_map for g in items]
        return GarmentFeatures([torch.cat(ps) for ps in zip(*(g.pyramid for g in items))],
                               None if tm[0] is None else torch.cat(tm))  # type: ignore[arg-type]

    def to(self, *args, **kwargs) -> "GarmentFeatures":
        return GarmentFeatures([p.to(*args, **kwargs) for p in self.pyramid],
                               None if self.type_map is None else self.type_map.to(*args, **kwargs))


@dataclass
class PersonFeatures:
    """Person-side FPN pyramid (P0 stride 2 … P4 stride 32)."""

    pyramid: list[Tensor]

    def __len__(self) -> int:
        return self.pyramid[0].shape[0]

    def select(self, idx: Index) -> "PersonFeatures":
        i = _index(idx, self.pyramid[0].device)
        return PersonFeatures([p.index_select(0, i) for p in self.pyramid])

    @staticmethod
    def cat(items: Sequence["PersonFeatures"]) -> "PersonFeatures":
        return PersonFeatures([torch.cat(ps) for ps in zip(*(p.pyramid for p in items))])

    def to(self, *args, **kwargs) -> "PersonFeatures":
        return PersonFeatures([p.to(*args, **kwargs) for p in self.pyramid])


@dataclass
class WarpOutputs:
    """Decoder outputs. Lists run over levels coarse → fine; empty in inference mode.

    Shapes for batch B at input H×W (parts stacked [left; middle; right] on the batch axis):
    ``last_flow`` 3B×2×H×W, ``seg_logits`` B×C×H×W; training lists: ``flows`` 3B×2×(H/16…H),
    ``deltas`` 10 × 3B×2 (Main, Refine per level), ``part_images`` 3B×3, ``part_masks`` 3B×1,
    ``delta_x``/``delta_y`` 3B×4×(h−2)×(w−2), ``full_images`` B×3, ``full_masks`` B×1,
    ``attention`` B×3 (upsampled), ``segs`` B×C.
    """

    last_flow: Tensor
    seg_logits: Tensor
    flows: list[Tensor] = field(default_factory=list)
    deltas: list[Tensor] = field(default_factory=list)
    part_images: list[Tensor] = field(default_factory=list)
    part_masks: list[Tensor] = field(default_factory=list)
    delta_x: list[Tensor] = field(default_factory=list)
    delta_y: list[Tensor] = field(default_factory=list)
    full_images: list[Tensor] = field(default_factory=list)
    full_masks: list[Tensor] = field(default_factory=list)
    attention: list[Tensor] = field(default_factory=list)
    segs: list[Tensor] = field(default_factory=list)

    def as_tuple(self) -> tuple:
        """The official 11-tuple order (last_flow, last_flow_all, delta_list, x_all, ...)."""
        return (self.last_flow, self.flows, self.deltas, self.part_images, self.part_masks,
                self.delta_x, self.delta_y, self.full_images, self.full_masks, self.attention, self.segs)


def stack_parts(left: Tensor, middle: Tensor, right: Tensor) -> Tensor:
    """Three B×… part tensors → 3B×… in the official [left; middle; right] batch order."""
    return torch.cat((left, middle, right), 0)


class FlowDecoder(nn.Module):
    """Five-level local-flow / global-parsing decoder (``aflow_net``)."""

    def __init__(self, variant: Variant, width: float = 1.0) -> None:
        super().__init__()
        spade = variant == "dresscode"
        c = scaled(FPN_CHANNELS, width)

        def heads(cin: int, cout: int, spade_: bool, tanh: bool = False) -> nn.ModuleList:
            return nn.ModuleList(head(cin, cout, width, spade_, tanh) for _ in range(NUM_LEVELS))

        # registration order = official key order
        self.netLeftMain = heads(NUM_DISPLACEMENTS, 2, spade)
        self.netTorsoMain = heads(NUM_DISPLACEMENTS, 2, spade)
        self.netRightMain = heads(NUM_DISPLACEMENTS, 2, spade)
        self.netLeftRefine = heads(2 * c, 2, spade)
        self.netTorsoRefine = heads(2 * c, 2, spade)
        self.netRightRefine = heads(2 * c, 2, spade)
        self.netAttentionRefine = heads(4 * c, 3, False, tanh=True)
        self.netPartFusion = nn.ModuleList(PartFusion(c) for _ in range(NUM_LEVELS))
        self.netSeg = heads(2 * c, NUM_SEG_CLASSES[variant], spade, tanh=True)
        # training-only smoothness filters; official checkpoints carry them as `aflow_net.weight`
        self.register_buffer("second_diff", fl.second_difference_bank(), persistent=False)

    def forward(self, gpyr: Sequence[Tensor], ppyr: Sequence[Tensor], part_masks: Tensor, preserve: Tensor,
                type_map: Optional[Tensor] = None, part_images: Optional[Tensor] = None,
                image: Optional[Tensor] = None, mask: Optional[Tensor] = None,
                mode: Mode = "inference") -> WarpOutputs:
        training = mode == "training"
        if mode not in ("inference", "training"):
            raise ValueError(f"mode must be 'inference' or 'training', got {mode!r}")
        if not training:
            last_flow, seg = self.infer(gpyr, ppyr, part_masks, preserve, type_map)
            return WarpOutputs(last_flow=last_flow, seg_logits=seg)
        if training and (part_images is None or image is None or mask is None):
            raise ValueError("training mode needs part_images, image and mask")
        tm = type_map
        mains = (self.netLeftMain, self.netTorsoMain, self.netRightMain)
        refines = (self.netLeftRefine, self.netTorsoRefine, self.netRightRefine)
        out: dict[str, list[Tensor]] = {k: [] for k in (
            "flows", "deltas", "part_images", "part_masks", "delta_x", "delta_y",
            "full_images", "full_masks", "attention", "segs")}
        flow: Optional[Tensor] = None
        seg: Optional[Tensor] = None
        # flows stay in float32 when the features are bf16/fp16: a bf16 grid is ~1 px coarse
        fdt = torch.float32 if gpyr[0].dtype in (torch.bfloat16, torch.float16) else gpyr[0].dtype
        for i in range(NUM_LEVELS):
            g, p = gpyr[NUM_LEVELS - 1 - i], ppyr[NUM_LEVELS - 1 - i]
            g3 = g.repeat(3, 1, 1, 1)
            p3 = p.repeat(3, 1, 1, 1)
            if flow is None:
                g_in = g3
            else:  # correlation input is warped with a detached flow (training detail)
                g_in = fl.warp(g3, flow.detach(), padding="border")
            cost = F.leaky_relu(correlation(g_in, p3), LRELU_SLOPE)
            d1 = torch.cat([net[i](ck, tm) for net, ck in zip(mains, cost.chunk(3))]).to(fdt)
            flow = fl.offset_to_grid(d1) if flow is None else fl.compose(flow, d1)
            gl, gm, gr = fl.warp(g3, flow, padding="border").chunk(3)
            d2 = torch.cat([net[i](torch.cat((gk, p), 1), tm) for net, gk in zip(refines, (gl, gm, gr))]).to(fdt)
            flow = fl.compose(flow, d2)
            scale = 0.5 ** (NUM_LEVELS - 1 - i)
            flow_up = fl.up2(flow)
            if training:
                assert part_images is not None and image is not None and mask is not None
                att = torch.softmax(self.netAttentionRefine[i](torch.cat((gl, gm, gr, p), 1)), dim=1)
                fl_l, fl_m, fl_r = flow.chunk(3)
                fused = fl_l * att[:, 0:1] + fl_m * att[:, 1:2] + fl_r * att[:, 2:3]
                fused_up = fl.up2(fused)
                out["deltas"] += [d1, d2]
                out["attention"].append(fl.up2(att))
                out["full_images"].append(fl.warp(fl.rescale(image, scale), fused_up))
                out["full_masks"].append(fl.warp(fl.rescale(mask, scale), fused_up))
                out["flows"].append(flow_up)
                out["part_images"].append(fl.warp(fl.rescale(part_images, scale), flow_up))
                dx, dy = fl.second_differences(flow_up, self.second_diff)
                out["delta_x"].append(dx)
                out["delta_y"].append(dy)
            if training or i == NUM_LEVELS - 1:
                masks_w = fl.warp(fl.rescale(part_masks, scale), flow_up)
                keep = 1 - fl.rescale(preserve, scale)
                gs = fl.warp(fl.up2(g3), flow_up, padding="border").chunk(3)
                fused_feat = self.netPartFusion[i](
                    torch.cat([gk * mk * keep for gk, mk in zip(gs, masks_w.chunk(3))], 1))
                seg = self.netSeg[i](torch.cat((fused_feat, fl.up2(p)), 1), tm)
                if training:
                    out["part_masks"].append(masks_w)
                    out["segs"].append(seg)
            flow = flow_up
        assert flow is not None and seg is not None
        return WarpOutputs(last_flow=flow, seg_logits=seg, **out)


    def infer(self, gpyr: Sequence[Tensor], ppyr: Sequence[Tensor], part_masks: Tensor, preserve: Tensor,
              type_map: Optional[Tensor] = None, garment_rows: Optional[Tensor] = None,
              person_rows: Optional[Tensor] = None, compact: bool = False) -> tuple[Tensor, Tensor]:
        """Inference decoder → (last_flow 3B×2×H×W, seg_logits B×C×H×W) in the flow dtype.

        gpyr / ppyr: pyramids of R garment / U person rows (any dtype the policy chose);
        pair b reads garment row ``garment_rows[b]`` and person row ``person_rows[b]`` (default:
        row b of both). part_masks: 3B×1×H×W per pair ([left; middle; right]); preserve:
        B×1×H×W per pair; type_map: R×1×H×W per garment row (Dress Code). The flow dtype is
        float64 for float64 features, else float32.

        ``compact=True`` promises that every row is used (the caller gathered per-batch tables):
        the unused-row search (``torch.unique``, a device sync and a data-dependent shape) is
        skipped, so the shapes depend only on the tensor shapes and ``torch.compile`` sees one
        graph; person_rows None then means row b, or row 0 for every pair when there is one row.
        """
        b = part_masks.shape[0] // 3
        dev = gpyr[0].device
        fdt = torch.float64 if gpyr[0].dtype == torch.float64 else torch.float32
        gi = torch.arange(b, device=dev) if garment_rows is None else garment_rows.to(dev)
        pi = torch.arange(b, device=dev) if person_rows is None else person_rows.to(dev)
        gi3 = gi.repeat(3)
        if compact:   # the caller's tables hold only used rows: no search, no sync
            g_used, g_inv, p_used = None, gi, None
            n_p = ppyr[0].shape[0]
            rows_p = None if n_p == 1 or person_rows is None else pi
        else:
            g_used, g_inv = _used_rows(gi, gpyr[0].shape[0])  # only garment / person rows some pair reads
            p_used, p_inv = _used_rows(pi, ppyr[0].shape[0])
            n_p = ppyr[0].shape[0] if p_used is None else p_used.numel()
            # person-side tensors of the used rows reach the pairs by broadcasting (one person) or by p_inv
            rows_p = None if n_p == 1 or (n_p == b and bool((p_inv == torch.arange(b, device=dev)).all())) else p_inv
        tm = None if type_map is None else type_map.index_select(0, gi)
        mains = (self.netLeftMain, self.netTorsoMain, self.netRightMain)
        refines = (self.netLeftRefine, self.netTorsoRefine, self.netRightRefine)
        flow: Optional[Tensor] = None
        seg: Optional[Tensor] = None
        for i in range(NUM_LEVELS):
            g, p = gpyr[NUM_LEVELS - 1 - i], ppyr[NUM_LEVELS - 1 - i]
            if p_used is not None:
                p = p.index_select(0, p_used)
            p_pairs = p if rows_p is None else p.index_select(0, rows_p)
            if flow is None:  # the garment is not warped yet: one cost volume serves all three parts
                cost = F.leaky_relu(correlation(g.index_select(0, gi), p_pairs), LRELU_SLOPE)
                cost = cost.to(_in_dtype(mains[0][i]))
                d1 = torch.cat([net[i](cost, tm) for net in mains])
            else:
                cost = F.leaky_relu(correlation(fl.sample_rows(g, gi3, flow), p_pairs), LRELU_SLOPE)
                cost = cost.to(_in_dtype(mains[0][i]))
                d1 = torch.cat([net[i](ck, tm) for net, ck in zip(mains, cost.chunk(3))])
            d1 = d1.to(fdt)
            flow = fl.offset_to_grid(d1) if flow is None else fl.compose(flow, d1)
            parts = fl.sample_rows(g, gi3, flow).chunk(3)
            d2 = torch.cat([_split_head(net[i], gk, _person_half(net[i], p), rows_p, tm)
                            for net, gk in zip(refines, parts)]).to(fdt)
            flow = fl.compose(flow, d2)
            flow_up = fl.up2(flow)
            if i == NUM_LEVELS - 1:
                keep = (1 - preserve.to(fdt)).repeat(3, 1, 1, 1)
                weight = fl.warp(part_masks.to(fdt), flow_up) * keep  # warped part mask outside the preserve region
                fuse = self.netPartFusion[i]
                c = g.shape[1]
                w1 = fuse[0].weight  # C×3C×1×1: the per-part slices, stacked as 3C outputs
                w_parts = w1.view(c, 3, c, 1, 1).transpose(0, 1).reshape(3 * c, c, 1, 1)
                gu = g if g_used is None else g.index_select(0, g_used)
                table = F.conv2d(gu.to(w1.dtype), w_parts).to(g.dtype)
                fused = fl.sample_rows_up2(table, g_inv, flow_up, weight)
                fused = fused + fuse[0].bias.to(fused.dtype).view(1, c, 1, 1)
                fused = fuse[1](fused.to(_in_dtype(fuse[1])))
                seg = _split_head(self.netSeg[i], fused, _person_half(self.netSeg[i], fl.up2(p)), rows_p, tm)
            flow = flow_up
        assert flow is not None and seg is not None
        return flow, seg.to(fdt)


def _in_dtype(module: nn.Module) -> torch.dtype:
    """dtype of a module's first convolution (its inputs are cast to it)."""
    return next(m for m in module.modules() if isinstance(m, nn.Conv2d)).weight.dtype


def _used_rows(idx: Tensor, n: int) -> tuple[Optional[Tensor], Tensor]:
    """(sorted rows that ``idx`` uses, or None when it uses all ``n``; ``idx`` relative to them)."""
    used, inv = torch.unique(idx, sorted=True, return_inverse=True)
    return (None if used.numel() == n else used), inv


def _person_half(head: nn.Module, p: Tensor) -> Tensor:
    """Person half (+ bias) of a head's first conv on cat(garment, person): once per person row."""
    first = head[0]
    w = first.weight
    c = w.shape[1] - p.shape[1]
    return F.conv2d(p.to(w.dtype), w[:, c:], first.bias, first.stride, first.padding)


def _split_head(head: nn.Module, x: Tensor, person_half: Tensor, rows: Optional[Tensor],
                type_map: Optional[Tensor]) -> Tensor:
    """``head(cat(x, p[rows]), type_map)`` with the person half of the first conv precomputed.

    rows None: ``person_half`` already has one row per pair, or a single row for all of them.
    """
    first = head[0]
    w = first.weight
    y = F.conv2d(x.to(w.dtype), w[:, :x.shape[1]], None, first.stride, first.padding)
    y.add_(person_half if rows is None else person_half.index_select(0, rows))
    for m in list(head)[1:]:
        y = m(y, type_map) if getattr(m, "takes_segmap", False) else m(y)
    return y


class LFGPWarp(nn.Module):
    """GP-VTON warping module (official ``AFWM_Vitonhd_lrarms`` / ``AFWM_Dressescode_lrarms``).

    No BatchNorm or dropout: train and eval modes compute the same thing, and results do not
    depend on the batch. ``width`` scales every channel count (1.0 = official).
    """

    def __init__(self, variant: Variant = "vitonhd", width: float = 1.0) -> None:
        super().__init__()
        if variant not in NUM_SEG_CLASSES:
            raise ValueError(f"unknown warp variant {variant!r}")
        self.variant: Variant = variant
        self.width = float(width)
        spade = variant == "dresscode"
        self.image_features = FeatureEncoder(GARMENT_IN, width, spade=spade)
        self.cond_features = FeatureEncoder(PERSON_IN, width)
        self.image_FPN = RefinePyramid(width)
        self.cond_FPN = RefinePyramid(width)
        self.aflow_net = FlowDecoder(variant, width)

    @property
    def num_classes(self) -> int:
        return NUM_SEG_CLASSES[self.variant]

    @property
    def needs_type_map(self) -> bool:
        return self.variant == "dresscode"

    def encode_garment(self, garment_input: Tensor, type_map: Optional[Tensor] = None) -> GarmentFeatures:
        """Garment encoder + FPN on B×4 ``cat[RGB·mask, part label]``; type map B×1 (Dress Code)."""
        if self.needs_type_map and type_map is None:
            raise ValueError("the Dress Code warp model needs a type map")
        tm = type_map if self.needs_type_map else None
        if tm is not None:
            tm = tm.to(garment_input.dtype)
        return GarmentFeatures(self.image_FPN(self.image_features(garment_input, tm)), tm)

    def encode_person(self, cond: Tensor) -> PersonFeatures:
        """Person encoder + FPN on the B×51 condition (densepose ±1, pose ±1, preserve)."""
        return PersonFeatures(self.cond_FPN(self.cond_features(cond)))

    def decode(self, garment: GarmentFeatures, person: PersonFeatures, part_masks: Tensor, preserve: Tensor,
               *, part_images: Optional[Tensor] = None, image: Optional[Tensor] = None,
               mask: Optional[Tensor] = None, mode: Mode = "inference") -> WarpOutputs:
        """Decode B aligned (garment, person) rows.

        part_masks: 3B×1×H×W garment part masks, [left; middle; right] (:func:`stack_parts`).
        preserve:   B×1×H×W warp-stage preserve mask.
        Training mode also needs part_images (3B×3, garment·part mask), image (B×3 garment·mask)
        and mask (B×1 garment mask).
        """
        if len(garment) != len(person):
            raise ValueError(f"garment rows ({len(garment)}) != person rows ({len(person)})")
        return self.aflow_net(garment.pyramid, person.pyramid, part_masks, preserve, garment.type_map,
                              part_images, image, mask, mode)

    def decode_pairs(self, garment: GarmentFeatures, person: PersonFeatures, garment_rows: Optional[Tensor],
                     person_rows: Optional[Tensor], part_masks: Tensor, preserve: Tensor,
                     compact: bool = False) -> tuple[Tensor, Tensor]:
        """Inference decode of pairs (garment_rows[b], person_rows[b]) straight from encoded rows.

        No rows are copied per pair; part_masks 3B×1×H×W and preserve B×1×H×W are per pair.
        Rows None: pair b = garment row b and person row b (a single person row: every pair's).
        ``compact``: every row is used (see :meth:`FlowDecoder.infer`) — no data-dependent shapes.
        Returns (last_flow 3B×2×H×W, seg_logits B×C×H×W) in float32 (float64 for float64 features).
        """
        return self.aflow_net.infer(garment.pyramid, person.pyramid, part_masks, preserve, garment.type_map,
                                    garment_rows, person_rows, compact)

    def forward(self, cond: Tensor, garment: Tensor, garment_mask: Tensor, garment_label: Tensor,
                garment_left: Tensor, garment_mid: Tensor, garment_right: Tensor,
                mask_left: Tensor, mask_mid: Tensor, mask_right: Tensor, preserve: Tensor,
                type_map: Optional[Tensor] = None, mode: Mode = "training") -> WarpOutputs:
        """Official argument order (GPVTON.md §3.1); Dress Code adds the type map (B×1×H×W)."""
        gf = self.encode_garment(torch.cat((garment, garment_label), 1), type_map)
        pf = self.encode_person(cond)
        return self.decode(gf, pf, stack_parts(mask_left, mask_mid, mask_right), preserve,
                           part_images=stack_parts(garment_left, garment_mid, garment_right),
                           image=garment, mask=garment_mask, mode=mode)


