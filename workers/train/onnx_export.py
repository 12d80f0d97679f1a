"""The trained parser as ONNX (what ``gpvton preprocess``'s HumanParser runs, beside ``parser.json``)."""

from __future__ import annotations

import copy
import importlib.util
import io
import warnings

import torch
from torch import nn


def onnx_available() -> bool:
    """torch's ONNX exporter (TorchScript-based; the dynamo one needs onnxscript) needs ``onnx``."""
    return importlib.util.find_spec("onnx") is not None


def export_onnx(net: nn.Module, size: tuple[int, int]) -> bytes:
    """ONNX bytes of a :class:`~gpvton_core.parser.ParserNet` (or its DDP wrapper): input ``input``
    N×3×H×W, output ``logits``, batch and spatial axes dynamic (opset 17)."""
    if not onnx_available():
        raise RuntimeError("exporting the parser to ONNX needs the onnx package: pip install onnx "
                           "(or train with --set export_onnx=false and keep parser.safetensors)")
    m = copy.deepcopy(getattr(net, "module", net)).cpu().eval()
    axes = {"input": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch", 2: "height", 3: "width"}}
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")     # the TorchScript exporter's deprecation and IN train-mode notes
        torch.onnx.export(m, torch.zeros(1, 3, *size), buf, dynamo=False, input_names=["input"],
                          output_names=["logits"], dynamic_axes=axes, opset_version=17)
    return buf.getvalue()
