"""The safe-MTL report (DESIGN.md §7): MTL vs STL per task and metric, Δ, Δp and η over seeds.

- :mod:`.aggregate`: the numbers, from each run's ``results.json`` (seeds, Δ, Δp, η, p-values,
  the conflict rate, what each run trained);
- :mod:`.render`: the terminal table, Markdown, JSON, and writing the report files;
- :mod:`.plots`: the matplotlib figures (imported only when a PNG is drawn);
- :mod:`.grid`: the sweep's grid table.

The names below are the report's public interface (``from mtl_platform.report import ...``).
"""
from __future__ import annotations

from .aggregate import build_report, conflict_rate, load_results, model_summary
from .grid import grid_table
from .plots import plot_deltas, plot_training
from .render import DEFAULT_FORMATS, FORMATS, TRAINING_PLOT, render_markdown, render_terminal, write_report

__all__ = ["DEFAULT_FORMATS", "FORMATS", "TRAINING_PLOT", "build_report", "conflict_rate", "grid_table", "load_results",
           "model_summary", "plot_deltas", "plot_training", "render_markdown", "render_terminal", "write_report"]
