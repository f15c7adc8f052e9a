"""Figures for reports: matplotlib without a display, saved as PNG with fixed metadata (same
figures, same bytes) and written atomically."""

from __future__ import annotations

import io
from pathlib import Path

from .fsutil import atomic_write_bytes


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: Path, dpi: int = 100) -> Path:
    plt = pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
