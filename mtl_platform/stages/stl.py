"""A stage that obtains every task's single-task model from the STL baseline cache (DESIGN.md §7)."""
from __future__ import annotations

from pathlib import Path

from ..baselines import ensure_baselines
from ..contracts.stage import Stage, StageContext


class STLStage(Stage):
    """Each task's STL model — ``stl_config(config, task, registry)``, the very models the Δp baselines
    use — reused from ``$MTL_CACHE`` when present, trained (and cached) otherwise.

    Results: per task the cache hash, the weights file and the STL metrics, so a later stage
    (DSMTL-IL's gated stage) loads the weights and the report can cite them.
    """

    def __init__(self, name: str = "stl"):
        self.name = name

    def run(self, ctx: StageContext) -> dict:
        tasks = ctx.domain.task_names
        # the session has just ensured the Δp baselines, the same cache entries: say so once, not per task again
        ensured = ctx.reference is not None and set(tasks) <= set(ctx.reference)
        found = ensure_baselines(ctx.config, tasks, ctx.registry, ctx.pm,
                                 (lambda *a, **k: None) if ensured else ctx.echo)
        if ensured:
            keys = ", ".join(f"{t} {b['hash'][:12]}" for t, b in found.items())
            ctx.echo(f"{self.name}: the single-task models are the run's STL baselines ({keys})")
        return {"stage": self.name, "models": {
            t: {"hash": b["hash"], "weights": str(Path(b["path"]) / "weights.pt"), "reused": b["reused"],
                "test": b["results"]["test"]} for t, b in found.items()}}
