"""Figures written to files, without pyplot: no global figure state, no GUI backend.

Nodes and commands run headless and may plot from several threads; a ``Figure`` with its own
Agg canvas needs neither ``matplotlib.use`` nor ``plt.close``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def figure(figsize: tuple[float, float]) -> Any:
    """A ``matplotlib.figure.Figure`` drawn by its own Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def save(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """Lay out and write ``fig`` to ``path`` (its folder is created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path
