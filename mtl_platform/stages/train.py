"""The ordinary training stage: build one model from a (stage-adjusted) config and train it."""
from __future__ import annotations

import copy
from typing import Callable

from .. import runs
from ..atomic import atomic_write_text
from ..config import dump
from ..contracts.stage import Stage, StageContext
from ..experiment import build_experiment
from ..trainer import Trainer


class TrainStage(Stage):
    """Train the model of ``configure(config, ctx)`` (default: the run's config) in the stage folder.

    ``init(model, ctx)`` loads weights before training (DSMTL-IL loads the STL models); a
    resumed stage then restores its own checkpoint over them. The results carry the
    architecture section that was trained and its parameter counts (the report shows both).
    """

    def __init__(self, name: str = "main", configure: Callable | None = None, init: Callable | None = None):
        self.name = name
        self.configure = configure
        self.init = init

    def stage_config(self, ctx: StageContext) -> dict:
        config = copy.deepcopy(ctx.config)
        return self.configure(config, ctx) if self.configure else config

    def run(self, ctx: StageContext) -> dict:
        config = self.stage_config(ctx)
        exp = build_experiment(config, ctx.registry, domain=ctx.domain)
        if self.init is not None:
            self.init(exp.model, ctx)
        if ctx.stage_dir != ctx.run_dir:
            atomic_write_text(ctx.stage_dir / runs.CONFIG_FILE, dump(config))
        extra = dict(ctx.extra) if ctx.final else {}
        extra.update(architecture=config["architecture"], weighting=config["weighting"],
                     parameters=exp.model.parameter_counts())
        trainer = Trainer(exp, ctx.stage_dir, ctx.pm, stage=self.name,
                          reference=ctx.reference if ctx.final else None, extra=extra, echo=ctx.echo)
        return trainer.fit(resume=ctx.resume)
