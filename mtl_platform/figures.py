"""Matplotlib, imported only when a figure is drawn (``mtl --help`` must not pay for it),
with the Agg backend, and PNGs written atomically."""
from __future__ import annotations

import io
import os
from pathlib import Path

from .atomic import atomic_write_bytes


def subplots(*args, **kwargs):
    """``plt.subplots`` on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def save_png(fig, path: str | os.PathLike) -> None:
    """Render ``fig`` to ``path`` atomically and close it."""
    import matplotlib.pyplot as plt

    try:
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())
