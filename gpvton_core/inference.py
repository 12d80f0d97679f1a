"""Cross-product try-on inference with cached garment / person features.

Stable API for the render stage::

    pipe = TryOnPipeline(warp, generator, resolution=(512, 384), device="cpu", precision="fp32")
    gb = pipe.encode_garments(GarmentInputs(...))      # G garment rows, encoded once
    pb = pipe.encode_persons(PersonInputs(...))        # P person rows, encoded once
    out = pipe.run_pairs(gb, pb, garment_idx, person_idx, batch_size=4)   # any list of pairs
    out = pipe.cross(gb, pb)                           # all G×P pairs, person-major order
    out.tryon                                          # N×3×H×W in [−1,1]
    out.warped_part_masks, out.seg, out.preserve_gen   # what gpvton_core.scores needs

The garment and person encoders run once per row; only the flow decoder, the assembly and
the generator run per pair. Everything runs under ``torch.inference_mode()``; the generator
runs in eval mode, so a pair's output does not depend on its batch neighbours.

Inputs, encoded rows and outputs are the types of :mod:`gpvton_core.tryon_batches` (its docstring
lists the input tensors); at 1024×768 the warp runs at half resolution (GPVTON.md §4) and
everything else at full.

Every network runs channels-last (weights and activations; ``channels_last=False`` for the
old NCHW layout). ``precision`` (see :mod:`gpvton_core.precision`):

* ``"fp32"`` (default): everything float32.
* ``"bf16"`` / ``"fp16"``: the convolutions of the groups a :class:`~gpvton_core.precision.Policy`
  names run in the reduced dtype (default :data:`~gpvton_core.precision.MIXED`); offsets, grids,
  sampling, the correlation's normalisation, the parsing argmax, the assembly and the composition
  stay float32. bf16 only pays on CPUs with native bf16 (AVX512-BF16 / AMX) and on CUDA GPUs of
  compute capability ≥ 8.0; elsewhere a RuntimeWarning says it will be slow.
* ``"auto"``: bf16 where it is native, else fp32. ``pipe.precision`` is the resolved choice,
  ``pipe.precision_info()`` what a job records about it.
* ``"fp64"``: everything float64 (verification only: slow).

``compile=True`` wraps the decoder and the generator in ``torch.compile`` (inductor; a string
names the mode, e.g. ``"reduce-overhead"`` for CUDA graphs); off by default
(bench/bench_core.py and bench/gpu_check.py measure whether it pays on a machine).

Fixed shapes (``run_pairs(..., fixed_shapes=True)``): a compiled graph is specialised to its input
shapes, and the plain decoder takes the caller's whole garment / person tables (whose row counts
change from unit to unit) and finds the rows a batch uses with ``torch.unique`` (a device sync and
a data-dependent shape). With fixed shapes every chunk is padded to exactly ``batch_size`` pairs
(repeating its last pair; the padded rows are dropped from the outputs) and decoded from
per-chunk tables: the garment row of every pair, and the chunk's distinct persons padded to a
power of two (:func:`person_bucket`). The compiled networks then see at most
``1 + log2(batch_size)`` shapes, whatever the units look like, and no step syncs with the host.
The results equal the plain path's up to float rounding.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Optional, Union

import torch
from torch import Tensor

from . import assembly as asm
from . import precision as prec
from .generator import TryOnGenerator
from .precision import Policy, Precision
from .tryon_batches import (GarmentBatch, GarmentInputs, Index, PersonBatch, PersonInputs, TryOnOutputs, host_indices,
                            to_device)
from .warp import GarmentFeatures, LFGPWarp, PersonFeatures


def person_bucket(n: int, batch_size: int) -> int:
    """Rows of a chunk's person table for ``n`` distinct persons: 1, else the next power of two,
    at most ``batch_size`` — so a chunk's shapes come from ``1 + log2(batch_size)`` cases."""
    if n <= 1:
        return 1
    return min(1 << (n - 1).bit_length(), max(batch_size, n))


def _parts_stacked(x: Tensor) -> Tensor:
    """B×3×C×H×W (per-part tensors) → 3B×C×H×W in [left; middle; right] order."""
    b, k = x.shape[:2]
    return x.transpose(0, 1).reshape(k * b, *x.shape[2:])


class TryOnPipeline:
    """Warp model + generator + variant + resolution; encode once, run pairs in batches."""

    def __init__(self, warp: LFGPWarp, generator: TryOnGenerator, *, resolution: tuple[int, int] = (512, 384),
                 device: Union[str, torch.device] = "cpu", precision: Precision = "fp32",
                 quantize: bool = True, channels_last: bool = True, policy: Optional[Policy] = None,
                 compile: Union[bool, str] = False) -> None:
        h, w = resolution
        if h % 32 or w % 32 or (h >= 1024 and (h // 2) % 32):
            raise ValueError(f"resolution {resolution} must be a multiple of 32")
        self.variant = warp.variant
        self.resolution = (int(h), int(w))
        self.half_res_warp = asm.half_res_warp(h)
        self.device = torch.device(device)
        self.requested_precision = precision
        self.precision, self.precision_reason = prec.resolve(precision, self.device)
        if self.precision in ("bf16", "fp16") and precision != "auto":
            native, why = prec.native_bf16(self.device)
            if not native or (self.precision == "fp16" and self.device.type == "cpu"):
                warnings.warn(f"precision={self.precision!r} on a {why}: it will be slower than fp32",
                              RuntimeWarning, stacklevel=2)
        self.policy = prec.policy_for(self.precision, policy)
        self.quantize = quantize
        # dtype of what the pipeline hands to the networks and of the assembly / composition
        self.dtype = torch.float64 if self.precision == "fp64" else torch.float32
        self.out_dtype = self.dtype
        self._fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.warp = warp.to(self.device, self.dtype, memory_format=self._fmt).eval()
        self.generator = generator.to(self.device, self.dtype, memory_format=self._fmt).eval()
        prec.apply_warp(self.warp, self.policy)
        prec.apply_generator(self.generator, self.policy)
        red = self.policy.dtype if self.policy is not None else self.dtype
        # cached pyramids: garment rows are sampled, person rows correlated, per pair
        self._garment_dtype = red if self.policy is not None and self.policy.sample else self.dtype
        self._person_dtype = red if self.policy is not None and self.policy.corr else self.dtype
        self.compiled: Union[bool, str] = compile
        self._decode = self.warp.decode_pairs
        self._generate = self.generator.infer
        # CUDA graphs reuse their output buffers on the next replay: outputs are cloned, steps marked
        self._graphs = bool(compile) and self.device.type == "cuda" and "reduce-overhead" in str(compile)
        #: seconds of the first call of each compiled shape (compilation + first run), by shape
        self.warmup: dict[str, float] = {}
        if compile:  # True: inductor's default mode; a string names the mode ("reduce-overhead": CUDA graphs)
            mode = None if compile is True else str(compile)
            self._decode = torch.compile(self.warp.decode_pairs, mode=mode, dynamic=False)
            self._generate = torch.compile(self.generator.infer, mode=mode, dynamic=False)

    def precision_info(self) -> dict[str, Any]:
        """What a job records (job.json) about the numeric precision it ran with."""
        native, why = prec.native_bf16(self.device)
        info: dict[str, Any] = {"requested": self.requested_precision, "resolved": self.precision,
                                "reason": self.precision_reason, "device": str(self.device),
                                "native_bf16": native, "native_bf16_reason": why,
                                "channels_last": self._fmt == torch.channels_last, "compile": self.compiled,
                                "policy": None if self.policy is None else self.policy.as_dict()}
        if self.device.type == "cpu":
            info["cpu_flags"] = prec.cpu_flags()
        return info

    @classmethod
    def from_checkpoints(cls, warp_ckpt, generator_ckpt, **kwargs) -> "TryOnPipeline":
        """Build from checkpoint files / state dicts (official ``.pth`` or our safetensors)."""
        from .checkpoints import build_from_checkpoint

        warp, _ = build_from_checkpoint(warp_ckpt)
        gen, _ = build_from_checkpoint(generator_ckpt)
        if not isinstance(warp, LFGPWarp) or not isinstance(gen, TryOnGenerator):
            raise ValueError("expected a warp checkpoint and a generator checkpoint")
        return cls(warp, gen, **kwargs)

    # -- helpers -------------------------------------------------------------------------------
    def _net(self, x: Tensor) -> Tensor:
        return x.to(self.device, self.dtype).contiguous(memory_format=self._fmt)

    def _f32(self, x: Tensor) -> Tensor:
        return x.to(self.device, self.out_dtype)

    def _check_size(self, x: Tensor, what: str) -> None:
        if tuple(x.shape[-2:]) != self.resolution:
            raise ValueError(f"{what} is {tuple(x.shape[-2:])}, pipeline resolution is {self.resolution}")

    def _lowres(self, x: Tensor, bilinear: bool) -> Tensor:
        return asm.warp_resolution(x, self.half_res_warp, bilinear)

    # -- encoders ------------------------------------------------------------------------------
    @torch.inference_mode()
    def encode_garments(self, g: GarmentInputs) -> GarmentBatch:
        self._check_size(g.image, "garment image")
        cats = list(g.category)
        if len(cats) != len(g):
            raise ValueError("garment category list length differs from the batch")
        part_cls, extra_cls = asm.class_table(self.variant, cats, self.device)
        mask, parts = self._f32(g.mask), self._f32(g.parts)
        clothes = self._f32(g.image) * mask
        label = asm.garment_label(parts, self.variant, cats)
        tm = None
        if self.warp.needs_type_map:
            tm = self._net(self._lowres(asm.type_map(cats, self.resolution, self.out_dtype, self.device), True))
        x = self._net(torch.cat((self._lowres(clothes, True), self._lowres(label, False)), 1))
        feats = self.warp.encode_garment(x, tm)
        # the type map is a per-garment constant (asm.type_map): the decoder's SPADE layers take it
        # as B×1×1×1, which spares them a host sync per layer (gpvton_core.blocks.SPADE)
        feats = GarmentFeatures([f.to(self._garment_dtype) for f in feats.pyramid],
                                None if feats.type_map is None else feats.type_map[:, :, :1, :1].contiguous())
        return GarmentBatch(feats, self._lowres(parts, False), clothes, parts, part_cls, extra_cls, cats)

    @torch.inference_mode()
    def encode_persons(self, p: PersonInputs) -> PersonBatch:
        self._check_size(p.image, "person image")
        pin = PersonInputs(self._f32(p.image), p.densepose.to(self.device), self._f32(p.pose),
                           self._f32(p.preserve_warp), self._f32(p.preserve_gen), self._f32(p.skin),
                           None if p.category is None else list(p.category))
        cond = self._lowres(pin.cond(), False)
        feats = self.warp.encode_person(self._net(cond))
        feats = PersonFeatures([f.to(self._person_dtype) for f in feats.pyramid])
        return PersonBatch(feats, self._lowres(pin.preserve_warp, False), pin)

    # -- pairs ---------------------------------------------------------------------------------
    def _call(self, fn, *args):
        """A network call; under CUDA graphs each call is a new step and its outputs are copied out
        of the graph's buffers (the next replay overwrites them)."""
        if not self._graphs:
            return fn(*args)
        torch.compiler.cudagraph_mark_step_begin()
        out = fn(*args)
        return tuple(o.clone() for o in out) if isinstance(out, tuple) else out.clone()

    @torch.inference_mode()
    def _run_chunk(self, gb: GarmentBatch, pb: PersonBatch, gi: Tensor, pi: Tensor,
                   compact: bool = False) -> TryOnOutputs:
        """Pairs (gi[b], pi[b]). ``compact``: gb has one row per pair (gi = arange) and pb only the
        chunk's persons (see the module docstring, fixed shapes)."""
        parts_lr = _parts_stacked(gb.parts_warp.index_select(0, gi).unsqueeze(2))
        pres_lr = pb.preserve_warp_lr.index_select(0, pi)
        if compact:
            last_flow, seg_logits = self._call(self._decode, gb.features, pb.features, None,
                                               None if len(pb) == 1 else pi, parts_lr, pres_lr, True)
        else:
            last_flow, seg_logits = self._call(self._decode, gb.features, pb.features, gi, pi, parts_lr, pres_lr)
        flow = last_flow.to(self.out_dtype)
        flow, seg = asm.full_resolution(flow, asm.seg_argmax(seg_logits), self.half_res_warp)
        parts = gb.parts.index_select(0, gi)
        clothes = gb.clothes.index_select(0, gi)
        part_images = _parts_stacked(clothes.unsqueeze(1) * parts.unsqueeze(2))
        part_masks = _parts_stacked(parts.unsqueeze(2))
        person = pb.inputs
        cloth, label, warped_parts = asm.assemble_warp(part_images, part_masks, flow, seg,
                                                       person.preserve_warp.index_select(0, pi),
                                                       gb.part_cls.index_select(0, gi), gb.extra_cls.index_select(0, gi),
                                                       return_part_masks=True)
        if self.quantize:
            cloth = asm.quantize_uint8(cloth)
        preserve_gen = person.preserve_gen.index_select(0, pi)
        x, edge = asm.generator_input(person.image.index_select(0, pi), preserve_gen,
                                      cloth, label, person.skin.index_select(0, pi),
                                      person.pose.index_select(0, pi), self.variant)
        raw = self._call(self._generate, self._net(x)).to(self.out_dtype).contiguous()
        tryon, rendered, mask = asm.compose(raw, cloth, edge)
        return TryOnOutputs(tryon, cloth, label.round().long(), mask, rendered, seg.long(), warped_parts,
                            asm.generator_preserve(preserve_gen, edge, self.variant))

    def run_pairs(self, garments: GarmentBatch, persons: PersonBatch, garment_idx: Index, person_idx: Index,
                  batch_size: int = 4, fixed_shapes: bool = False) -> TryOnOutputs:
        """Try-on of pairs (garment_idx[n], person_idx[n]) in chunks of ``batch_size``.

        Pass host indices (lists or CPU tensors): device indices cost a sync. ``fixed_shapes``:
        see the module docstring (what a compiled pipeline needs).
        """
        gi, pi = host_indices(garment_idx), host_indices(person_idx)
        if gi.shape != pi.shape or gi.dim() != 1 or gi.numel() == 0:
            raise ValueError("garment_idx and person_idx must be equal-length, non-empty 1-D index lists")
        if persons.inputs.category is not None:
            bad = [(int(g), int(p)) for g, p in zip(gi.tolist(), pi.tolist())
                   if persons.inputs.category[p] != garments.category[g]]
            if bad:
                raise ValueError(f"category mismatch for (garment, person) pairs {bad[:5]}")
        if fixed_shapes:
            outs = [self._run_fixed(garments, persons, gi[s:s + batch_size], pi[s:s + batch_size], batch_size)
                    for s in range(0, gi.numel(), batch_size)]
        else:
            gd, pd = to_device(gi, self.device), to_device(pi, self.device)
            outs = [self._run_chunk(garments, persons, gd[s:s + batch_size], pd[s:s + batch_size])
                    for s in range(0, gi.numel(), batch_size)]
        return TryOnOutputs.cat(outs)

    def _run_fixed(self, gb: GarmentBatch, pb: PersonBatch, gi: Tensor, pi: Tensor, batch_size: int) -> TryOnOutputs:
        """One chunk at exactly ``batch_size`` pairs from per-chunk tables (host indices in)."""
        n = gi.numel()
        if n < batch_size:   # pad with the last pair: computed, then dropped
            gi = torch.cat((gi, gi[-1:].expand(batch_size - n)))
            pi = torch.cat((pi, pi[-1:].expand(batch_size - n)))
        used, inv = torch.unique(pi, sorted=True, return_inverse=True)   # on the host: no sync
        k = person_bucket(used.numel(), batch_size)
        used = torch.cat((used, used[-1:].expand(k - used.numel())))
        dev = self.device
        gsel, psel = gb.select(gi), pb.select(used)
        gsel.features = GarmentFeatures([f.contiguous(memory_format=self._fmt) for f in gsel.features.pyramid],
                                        gsel.features.type_map)
        psel.features = PersonFeatures([f.contiguous(memory_format=self._fmt) for f in psel.features.pyramid])
        key = f"pairs {batch_size} persons {k}"
        t0 = time.perf_counter() if self.compiled and key not in self.warmup else None
        out = self._run_chunk(gsel, psel, to_device(torch.arange(batch_size), dev), to_device(inv, dev), compact=True)
        if t0 is not None:
            self.warmup[key] = time.perf_counter() - t0
        return out.head(n)

    def cross(self, garments: GarmentBatch, persons: PersonBatch, batch_size: int = 4) -> TryOnOutputs:
        """All P×G pairs; row n = (person n // G, garment n % G)."""
        g, p = len(garments), len(persons)
        return self.run_pairs(garments, persons, torch.arange(g).repeat(p), torch.arange(p).repeat_interleave(g),
                              batch_size)

    def __call__(self, persons: PersonInputs, garments: GarmentInputs, batch_size: int = 4) -> TryOnOutputs:
        """Paired try-on: person row i with garment row i."""
        if len(persons) != len(garments):
            raise ValueError("paired call needs as many persons as garments")
        n = len(persons)
        return self.run_pairs(self.encode_garments(garments), self.encode_persons(persons),
                              range(n), range(n), batch_size)


def build_pipeline(variant: str = "vitonhd", width: float = 1.0, **kwargs) -> TryOnPipeline:
    """Randomly initialised pipeline (tests, demos, benchmarks)."""
    return TryOnPipeline(LFGPWarp(variant, width), TryOnGenerator(width), **kwargs)  # type: ignore[arg-type]


__all__ = ["TryOnPipeline", "build_pipeline", "person_bucket"]

