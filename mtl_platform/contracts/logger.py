"""The logger contract (DESIGN.md §4, training-loop hooks): a component the config's ``loggers``
list selects, which writes a run's scalars somewhere (TensorBoard, CSV, a tracking service).

A logger is a pluggy plugin object: the session builds one per entry of ``loggers`` before the
run directory exists (so a missing optional dependency is one line and exit code 2) and
registers it on the run's plugin manager. The hook implementations below turn what the trainer
reports into flat ``{tag: value}`` scalars; a logger implements three methods only:

- ``start(run, resumed)``: open its files in ``run.run_dir``; ``resumed`` is None for a fresh
  run, else ``{"metrics": step, "diagnostics": step}``, the last step of each kind that the
  resumed run kept (rows after it were cut back and will be logged again);
- ``log(run, kind, step, scalars)``: ``kind`` is ``"metrics"`` (one row of ``metrics.jsonl``
  per epoch, at the training step it ended on) or ``"diagnostics"`` (one row of
  ``diagnostics.jsonl``, at the gradient engine's step);
- ``end(run)``: flush and close.

Tags are the row's keys joined by ``/``: ``train/loss/<task>``, ``val/<task>/<metric>``,
``test/<task>/<metric>``, ``weights/<task>`` (the epoch's mean task weights), ``lr`` (learning
rate of the first parameter group), ``architecture/...`` (a search's α, gates); diagnostics
tags start with ``diagnostics/``: ``conflict`` (fraction of task pairs with negative
cosine), ``cos/<a>|<b>``, ``norm/<task>``, ``weights/<task>``, ``weighting/<name>``. Every
number of the two JSONL files appears, with the same value; booleans, strings and nulls do not.

Only the runs under the session's run directory are logged (the cached STL baselines are not),
and only by the process that writes files (rank 0 of a distributed run).
"""
from __future__ import annotations

import math
from pathlib import Path

from ..atomic import writes
from ..errors import UserError
from ..hookspecs import hookimpl
from .component import Configurable

#: keys of a metrics row that are coordinates or bookkeeping, not scalars
SKIPPED = ("epoch", "step", "time", "stage", "stopped")


def flatten(row: dict, prefix: str = "", skip: tuple = SKIPPED) -> dict[str, float]:
    """The numbers of a (nested) row as ``{prefix + "a/b/c": value}``, the top-level keys in
    ``skip`` and booleans and non-numbers left out."""
    out: dict[str, float] = {}
    for key, value in row.items():
        if key in skip:
            continue
        tag = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{tag}/", ()))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[tag] = value
    return out


class Logger(Configurable):
    """A training-loop observer that writes scalars; subclasses implement ``start``, ``log`` and ``end``.

    ``requires``: ``(module, install hint)`` pairs checked when the logger is built, so a
    missing optional dependency is one line before anything trains.
    """

    name: str = ""
    requires: tuple[tuple[str, str], ...] = ()

    def __init__(self, **params):
        self.config = self.set_params(params, f"loggers.{self.name}")
        self.root: Path | None = None  # the session's run directory (set by the session)
        self.active: set[str] = set()
        self.check_requirements()
        self.setup()

    def check_requirements(self) -> None:
        import importlib.util

        for module, hint in self.requires:
            try:
                found = importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                raise UserError(f"loggers: {self.name!r} needs the {module.split('.')[0]} package, which is not "
                                f"installed; {hint}")

    def setup(self) -> None:
        """Settings derived from the declared parameters (already attributes)."""

    # -- what a logger implements ------------------------------------------------------------
    def start(self, run, resumed: dict | None) -> None:
        raise NotImplementedError

    def log(self, run, kind: str, step: int, scalars: dict[str, float]) -> None:
        raise NotImplementedError

    def flush(self, run) -> None:
        """Make what was logged durable (after each epoch and each batch of diagnostics), so an
        interrupted run keeps its logs up to its last row."""

    def end(self, run) -> None:
        """Flush and close (when the run finishes)."""

    # -- the hooks ---------------------------------------------------------------------------
    def logs(self, run) -> bool:
        if not writes() or self.root is None:
            return False
        try:
            Path(run.run_dir).resolve().relative_to(Path(self.root).resolve())
        except ValueError:
            return False  # a cached STL baseline, trained outside the run directory
        return True

    @hookimpl
    def mtl_run_start(self, run):
        if not self.logs(run):
            return
        resumed = None
        if run.step:  # restored from a checkpoint, which cut both files back to it: log what they lost again
            from .. import runs

            kept = {kind: [r["step"] for r in runs.read_jsonl(Path(run.run_dir) / name)
                           if r.get("stage", run.stage) == run.stage]
                    for kind, name in (("metrics", runs.METRICS_FILE), ("diagnostics", runs.DIAGNOSTICS_FILE))}
            resumed = {kind: steps[-1] if steps else -1 for kind, steps in kept.items()}
        self.active.add(str(run.run_dir))
        self.start(run, resumed)

    @hookimpl
    def mtl_epoch_end(self, run, metrics):
        if str(run.run_dir) in self.active:
            self.log(run, "metrics", metrics["step"], finite(flatten(metrics)))
            self.flush(run)

    @hookimpl
    def mtl_diagnostics(self, run, rows):
        if str(run.run_dir) in self.active:
            for row in rows:
                self.log(run, "diagnostics", row["step"], finite(flatten(row, "diagnostics/")))
            self.flush(run)

    @hookimpl
    def mtl_run_end(self, run):
        if str(run.run_dir) in self.active:
            self.active.discard(str(run.run_dir))
            self.end(run)


def finite(scalars: dict[str, float]) -> dict[str, float]:
    """Every scalar but NaN (a metric a split leaves undefined); infinities are kept."""
    return {k: v for k, v in scalars.items() if not (isinstance(v, float) and math.isnan(v))}
