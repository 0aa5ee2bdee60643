"""The stage contract (DESIGN.md §3.4): a run is a sequence of stages, ordinary runs have one.

A stage owns its loop — loaders, optimizers, epochs, which parameters it steps, train/eval
modes — and reaches the domain only through ``losses``, ``loaders``, ``evaluate`` and
``split_train``. An architecture declares its stages with ``Architecture.stage_plan``; each
stage writes into ``RUN_DIR/stages/<name>/`` (a one-stage run writes into ``RUN_DIR``) and
returns a JSON-able results dict that later stages read from ``StageContext.previous``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


@dataclass
class StageContext:
    """What a stage sees of its run."""

    config: dict                       # the run's resolved config
    registry: object
    pm: object                         # the pluggy plugin manager (training-loop hooks)
    domain: object                     # built once per run, shared by every stage
    run_dir: Path
    stage_dir: Path                    # where this stage writes
    previous: dict = field(default_factory=dict)   # earlier stages' results, by stage name
    resume: bool = False               # continue this stage from its checkpoint
    final: bool = True                 # this stage's results are the run's results
    reference: dict | None = None      # STL validation metrics (train.select: val)
    extra: dict = field(default_factory=dict)      # what the final results carry (label, STL, ...)
    echo: Callable = print

    @property
    def arch_config(self) -> dict:
        """The run's ``architecture`` section (a stage's own settings live under it)."""
        return self.config["architecture"]


class Stage:
    """One stage of a run: ``run(ctx)`` trains (or derives) and returns its results."""

    name: str = "main"

    def run(self, ctx: StageContext) -> dict:
        raise NotImplementedError
