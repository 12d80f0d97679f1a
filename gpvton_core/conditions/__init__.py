"""Condition derivation for GP-VTON: pure functions (NumPy/PyTorch/Pillow, no file I/O).

Modules:
  labels     the vocabulary: BODY_25 joints, GP-29 labels, DensePose parts, garment parts, categories
  geometry   keypoint presence, distances to segments / chains / polygons, polygon masks
  pose       BODY_25 keypoints (OpenPose JSON, Dress Code COCO-18), scaling, 25-channel pose map
  pose_mapping  BlazePose-33 / COCO-17 → BODY_25 (table + fitted calibration), PCK@α·H scoring
  densepose  part-index one-hot, colour-rendering inversion
  densepose_approximation  part index from a person mask + the skeleton (bare photos)
  parsing    29-label GP-VTON parsing from LIP-/ATR-style parsings + pose
  parsing_checks  label-map validation, per-class IoU scoring, labels cut to the person mask
  garment    garment mask from a white background, garment part parsing (left/middle/right)
  masks      preserve masks, palm rule, official part masks/labels, person-side targets, skin colour
  ratio      DGT person–garment ratio (pc_ratio)
  resize     fit any image to the working resolution (3:4, centre crop/pad)

Every image-like array is H×W (×C) NumPy; label maps are uint8.
"""

DERIVATION_VERSION = "1.3.0"   # 1.3: estimated parsing and DensePose kept inside the person mask
