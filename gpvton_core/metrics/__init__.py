"""Set-level metric extractors and accumulators (pure PyTorch; weights come from the user's files).

* :mod:`.inception` — the FID Inception-v3 (pt_inception-2015-12-05 layout) for FID/KID.
* :mod:`.lpips` — LPIPS v0.1 with AlexNet or VGG16 trunks.
* :mod:`.set_metrics` — SSIM, LPIPS, FID, KID and mIoU over a set, with the written protocol.
"""

from gpvton_core.metrics.inception import (FID_WEIGHTS_NAME, FIDInceptionV3, WeightFileError,
                                           load_fid_inception)
from gpvton_core.metrics.lpips import LPIPS, load_lpips
from gpvton_core.metrics.set_metrics import METRICS, PAIRED_ONLY, PROTOCOL, SetMetrics

__all__ = ["FID_WEIGHTS_NAME", "FIDInceptionV3", "WeightFileError", "load_fid_inception", "LPIPS",
           "load_lpips", "METRICS", "PAIRED_ONLY", "PROTOCOL", "SetMetrics"]
