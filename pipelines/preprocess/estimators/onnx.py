"""onnxruntime execution providers for an estimator's ``device`` setting (one rule for all)."""

from __future__ import annotations


def onnx_providers(device: str, what: str) -> list[str]:
    """CUDA first when onnxruntime has it and ``device`` allows it; ``cuda`` without it is an error."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device != "cpu" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise RuntimeError(f"{what}.device=cuda but onnxruntime has no CUDAExecutionProvider (it offers {available})")
    return ["CPUExecutionProvider"]
