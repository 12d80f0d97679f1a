"""Score statistics of the report's scope: percentiles per score and one histogram per score with
its warn / fail thresholds drawn in."""

from __future__ import annotations

import io
from typing import Any, Callable

from pipelines.report.scope import SCORE_NAMES

PERCENTILES = (5, 25, 50, 75, 95)


def _scores(rows, name: str):
    import numpy as np

    if name not in rows.column_names:
        return np.zeros(0)
    v = rows.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
    return v[np.isfinite(v)]


def score_stats(rows) -> dict[str, dict[str, Any]]:
    """Per score: count, mean, std, min, max and the :data:`PERCENTILES` of its finite values."""
    import numpy as np

    out = {}
    for name in SCORE_NAMES:
        vals = _scores(rows, name)
        if vals.size == 0:
            out[name] = {"count": 0}
            continue
        pct = np.percentile(vals, PERCENTILES)
        out[name] = {"count": int(vals.size), "mean": float(vals.mean()), "std": float(vals.std()),
                     "min": float(vals.min()), "max": float(vals.max()),
                     **{f"p{p}": float(v) for p, v in zip(PERCENTILES, pct)}}
    return out


def histograms(rows, thresholds: dict, put: Callable[[str, bytes], None]) -> dict[str, str]:
    """One PNG per score with data: ``{score: "hist/score.png"}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = {}
    for name in SCORE_NAMES:
        vals = _scores(rows, name)
        if not vals.size:
            continue
        fig, ax = plt.subplots(figsize=(4.2, 2.6), dpi=100)
        lo, hi = min(0.0, float(vals.min())), max(1.0, float(vals.max()))
        ax.hist(vals, bins=40, range=(lo, hi), color="#4c72b0", edgecolor="white", linewidth=0.3)
        t = thresholds.get(name, {})
        for level, colour in (("warn", "#dd8452"), ("fail", "#c44e52")):
            if level in t:
                ax.axvline(t[level], color=colour, linestyle="--", linewidth=1.4,
                           label=f"{level} < {t[level]:g}")
        if t:
            ax.legend(fontsize=7, loc="upper left")
        ax.set_title(f"{name} (n={len(vals)})", fontsize=9)
        ax.set_xlabel("score (higher is better)", fontsize=8)
        ax.set_ylabel("pairs", fontsize=8)
        ax.tick_params(labelsize=7)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", metadata={"Software": None})
        plt.close(fig)
        key = f"hist/{name}.png"
        put(key, buf.getvalue())
        keys[name] = key
    return keys
