"""``loss_curve.png``: a run's total loss per step and the main terms of its stage, on a log scale."""

from __future__ import annotations

import io

#: the terms drawn besides the total, per stage (the parser draws the total only)
CURVE_TERMS = {"warp": ("l1", "full_l1", "parsing"), "generator": ("l1_tryon", "l1_rendered")}


def plot_curve(rows: list[dict], stage: str) -> bytes:
    """PNG bytes of the loss curve (matplotlib, Agg: no display needed on a worker)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    steps = [r["step"] for r in rows]
    ax.plot(steps, [r["total"] for r in rows], label="total", lw=1.5)
    for k in CURVE_TERMS.get(stage, ()):
        if rows and k in rows[0]:
            ax.plot(steps, [r[k] for r in rows], label=k, lw=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.set_title(f"gpvton train {stage}")
    ax.legend()
    ax.grid(alpha=0.3)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
