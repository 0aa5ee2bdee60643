"""``mtl sweep``: the Cartesian product of ``--grid`` values × seeds, plus each ``--cell`` × seeds,
one ordinary training run per cell, then one aggregated safe-MTL report.

A ``--cell 'KEY=VALUE; KEY=VALUE'`` is one cell outside the product: CONFIG, the ``--set``s,
then its assignments (a key also in ``--set`` or ``--grid`` takes the cell's value; grid values
are never applied to it). It is validated, skipped and resumed like the grid's cells; its
report group is labelled ``... [--cell KEY=VALUE; ...]`` and ``grid.md`` lists it in a table
of its own. A cell equal to another (grid or ``--cell``) is refused.

Every cell is ``mtl train CONFIG --set ...`` with the cell's grid values, ``train.seed`` and
the fixed ``--set``s, run by :func:`mtl_platform.session.train` into ``OUT/runs/``.
``OUT/sweep.json`` records the grid, the seeds and each cell's overrides, status and run
directory. Every cell's config is resolved before anything trains, so a bad key or value
is one :class:`UserError` with nothing written.

Re-running the same sweep skips finished cells. A cell's run directory is found by the
defining config hash (:func:`mtl_platform.config.config_hash`, which leaves out the output
and logging keys) of the ``config.yaml`` in each directory under ``OUT/runs/``; it is
finished when it holds a ``results.json``. One without (interrupted, or failed) is resumed
with ``session.train(resume=run_dir)`` when it holds a checkpoint; without a checkpoint the
cell is started again from scratch in that same directory (the trainer's resume without a
checkpoint is a fresh start), so re-runs never pile up directories. A cell with no matching
directory trains in a new one.

The cells run through an executor (:mod:`.executors`): ``local`` (this process, or ``--workers``
spawned processes) or ``ray`` (each cell a Ray task, on a local Ray or the cluster at
``--address``); the planning above, the records and the report are the same for both.
"""
from __future__ import annotations

from mtl_platform.report.grid import grid_table

from .plan import RUNS_DIR, cell_name, cell_text, parse_cells, parse_grid, parse_seeds, plan_cells
from .run import SWEEP_FILE, run_sweep

__all__ = ["RUNS_DIR", "SWEEP_FILE", "cell_name", "cell_text", "grid_table", "parse_cells", "parse_grid",
           "parse_seeds", "plan_cells", "run_sweep"]
