"""Run a stage plan (DESIGN.md §3.4, §10): each stage in ``RUN_DIR/stages/<name>/`` (a
one-stage run writes into ``RUN_DIR`` itself), finished stages recorded, ``--resume``
skipping them and continuing the stage that was running from its checkpoint."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from .. import runs
from ..atomic import writes
from ..contracts.stage import Stage, StageContext
from ..errors import UserError
from .train import TrainStage

STAGES_DIR = "stages"
PROGRESS_FILE = "stages.json"


def stage_dir(run_dir: Path, plan: list[Stage], stage: Stage) -> Path:
    return Path(run_dir) if len(plan) == 1 else Path(run_dir) / STAGES_DIR / stage.name


def run_stages(plan: list[Stage], ctx: StageContext) -> dict:
    """Run (or resume) ``plan`` (empty: one ordinary training stage, ``TrainStage``); return
    the last stage's results, which carry every stage's summary."""
    plan = list(plan) or [TrainStage()]
    names = [s.name for s in plan]
    if len(set(names)) != len(names):
        raise ValueError(f"stage names must be unique: {names}")
    progress_path = ctx.run_dir / PROGRESS_FILE
    done: list[str] = []
    if ctx.resume and progress_path.exists():
        recorded = json.loads(progress_path.read_text())
        if recorded["stages"] != names:
            raise UserError(f"--resume {ctx.run_dir}: its stages {recorded['stages']} differ from this "
                            f"architecture's {names}")
        done = recorded["done"]
    previous: dict[str, dict] = {}
    results: dict = {}
    for i, stage in enumerate(plan):
        folder = stage_dir(ctx.run_dir, plan, stage)
        final = i == len(plan) - 1
        if stage.name in done:
            previous[stage.name] = results = json.loads((folder / runs.RESULTS_FILE).read_text())
            ctx.echo(f"stage {stage.name}: finished before, reusing its results")
            continue
        resuming = ctx.resume and folder.exists() and any(folder.iterdir())
        if writes():  # rank 0 of a distributed run
            folder.mkdir(parents=True, exist_ok=True)
        if len(plan) > 1:
            ctx.echo(f"stage {i + 1}/{len(plan)}: {stage.name}" + (" (resuming)" if resuming else ""))
        sub = replace(ctx, stage_dir=folder, previous=dict(previous), resume=resuming, final=final)
        results = stage.run(sub)
        results.setdefault("run_dir", str(folder))
        results.setdefault("stage", stage.name)
        runs.write_json(folder / runs.RESULTS_FILE, results)
        previous[stage.name] = results
        done.append(stage.name)
        if len(plan) > 1:
            runs.write_json(progress_path, {"stages": names, "done": done})
    if len(plan) > 1:
        results = dict(results, run_dir=str(ctx.run_dir), stages={n: summary(previous[n]) for n in names})
        runs.write_json(ctx.run_dir / runs.RESULTS_FILE, results)
    return results


def summary(results: dict) -> dict:
    """What the run's results keep of a stage: where it is and what it produced."""
    keep = ("run_dir", "epochs_trained", "derived", "parameters", "searched_parameters", "architecture", "models")
    return {k: results[k] for k in keep if k in results}
