"""The parser stage: :class:`gpvton_core.parser.ParserNet` on the shards' persons, cross-entropy on
their 29-label parsings (or the LIP collapse). Besides the usual run files it writes
``parser.onnx`` and ``parser.json``, the contract under which the ONNX model runs.

Augmentation: a horizontal flip with the left/right classes swapped, drawn from the loop's
(seed, step, rank) generator like everything else, so resuming stays exact.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from gpvton_core.parser import INPUT_MEAN, INPUT_STD, SCHEMES, ParserNet, flip_labels, normalize_rgb
from gpvton_core.rows import decode_labels
from infra.storage import Storage

from .data import decode_person, list_persons
from .loop import Stage
from .onnx_export import export_onnx


def parser_contract(labels: str, size: tuple[int, int], keep_aspect: bool) -> dict[str, Any]:
    """``parser.json``: the :class:`~pipelines.preprocess.estimators.parser.ParserConfig` fields
    under which ``parser.onnx`` runs (input RGB in 0..1, normalised; logits at the input size)."""
    return {"classes": labels, "input_size": list(size), "channel_order": "rgb", "mean": list(INPUT_MEAN),
            "std": list(INPUT_STD), "keep_aspect": keep_aspect, "flip": False, "output": "logits",
            "output_index": 0, "class_map": list(range(SCHEMES[labels]))}


class ParserStage(Stage):
    name = "parser"
    examples_key = "persons"

    @property
    def labels(self) -> str:
        return self.c.get("labels") or "gp29"

    def load_examples(self) -> int:
        c = self.c
        persons = list_persons(c["shards"], self.s3)
        if c.get("max_pairs"):
            persons = persons[: int(c["max_pairs"])]
        if not persons:
            raise ValueError(f"{c['shards']}: no persons to train a parser on")
        self._persons: list[dict] = persons
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        return len(persons)

    def _sample(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if i not in self._cache:
            self._cache[i] = decode_person(self._persons[i], self.size, self.labels)
        return self._cache[i]

    def build(self) -> None:
        c = self.c
        self.net = ParserNet(SCHEMES[self.labels], float(c["model_width"]))
        beta1 = float(c["beta1"]) if c.get("beta1") is not None else 0.9
        self.opt = torch.optim.Adam(self.net.parameters(), lr=float(c["lr"]), betas=(beta1, 0.999))

    def optimizers(self) -> dict[str, tuple[Optional[torch.optim.Optimizer], float]]:
        return {"opt": (self.opt, float(self.c["lr"]))}

    def meta(self) -> dict[str, Any]:
        H, W = self.size
        h0, w0 = decode_labels(self._persons[0]["parsing_png"]).shape[:2]
        return {"labels": self.labels, "num_classes": SCHEMES[self.labels],
                "contract": parser_contract(self.labels, self.size, keep_aspect=h0 * W == w0 * H)}

    def distribute(self) -> None:
        self._device = self.ctx.device()
        if self.ctx.in_ray:
            self.net = self.ctx.prepare(self.net)   # DDP when world > 1

    def _batch(self, idx: list[int], rng: np.random.Generator) -> tuple[Tensor, Tensor]:
        """Images (normalised) and labels of ``idx``, each flipped with probability ½ when augmenting."""
        augment = bool(self.c.get("augment", True))
        imgs, labs = [], []
        for i in idx:
            img, lab = self._sample(i)
            if augment and rng.random() < 0.5:
                img, lab = img[:, ::-1], flip_labels(lab, self.labels)
            imgs.append(np.ascontiguousarray(img))
            labs.append(np.ascontiguousarray(lab))
        x = normalize_rgb(torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2)).to(self._device)
        return x, torch.from_numpy(np.stack(labs)).long().to(self._device)

    def train_step(self, idx: list[int], epoch: int, rng: np.random.Generator) -> tuple[dict, dict[str, Tensor]]:
        x, y = self._batch(idx, rng)
        logits = self.net(x)
        loss = F.cross_entropy(logits, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {}, {"total": loss, "pixel_acc": (logits.detach().argmax(1) == y).float().mean()}

    def finish(self, out: Storage, meta: dict) -> None:
        if self.c.get("export_onnx", True):
            out.write_bytes("parser.onnx", export_onnx(self.net, self.size))
        out.write_json("parser.json", meta["contract"])
