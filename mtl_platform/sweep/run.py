"""Running a sweep: each planned cell trained (or resumed, or restarted) by
:func:`mtl_platform.session.train` through an executor (:mod:`.executors`: this process, worker
processes, or Ray tasks); each outcome is recorded in ``OUT/sweep.json`` as it completes; a failing
cell is recorded with its error and never stops the others; then the aggregated report and the
grid table over the finished cells, in the planned order of the cells, whatever order they
finished in."""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Callable, Iterable

from mtl_platform import runs
from mtl_platform.atomic import atomic_write_text
from mtl_platform.errors import UserError

from .executors import make_executor
from .plan import RUNS_DIR, _index_runs, _pick, cell_text, plan_cells

SWEEP_FILE = "sweep.json"


# -- the sweep ---------------------------------------------------------------------------------
def _record(config_path, grid, seeds, sets, extra, cells, report=None) -> dict:
    return {
        "config": str(config_path),
        "grid": grid,
        "extra_cells": [cell_text(pairs) for pairs in extra],
        "seeds": seeds,
        "sets": list(sets),
        "cells": [{k: c[k] for k in ("name", "overrides", "extra", "seed", "hash", "status", "run_dir", "error")}
                  for c in cells],
        "report": report,
    }


def run_sweep(config_path, grid: dict[str, list[str]], seeds: list[int], out=None, sets: Iterable[str] = (),
              workers: int = 1, progress: bool = True, echo: Callable = print,
              extra_plugins: Iterable = (), extra: Iterable[list[tuple[str, str]]] = (),
              executor: str = "local", address: str | None = None, cpus_per_cell: float | None = None,
              gpus_per_cell: float | None = None) -> dict:
    """Run (or finish) the sweep; return what ``OUT/sweep.json`` holds, plus ``failed`` (count).

    ``extra``: the ``--cell``s (:func:`~mtl_platform.sweep.plan.parse_cells`), each one more
    cell × seeds beside the grid's. ``out`` defaults to ``runs/sweeps/<config stem>``. ``extra_plugins`` (in-process plugin
    objects, e.g. hook recorders) need the local executor with ``workers == 1``. ``executor``:
    ``local`` (``workers`` processes) or ``ray`` (``address``, ``cpus_per_cell``,
    ``gpus_per_cell``; see :class:`~mtl_platform.sweep.executors.RayExecutor`).
    """
    sets = list(sets)
    seeds = list(seeds or [])
    extra = [list(pairs) for pairs in extra]
    extra_plugins = list(extra_plugins)
    runner = make_executor(executor, workers, extra_plugins, address, cpus_per_cell, gpus_per_cell)
    if not grid and not seeds and not extra:
        raise UserError("mtl sweep: nothing to sweep; give --grid KEY=V1,V2, --cell 'KEY=VALUE; ...' and/or --seeds")
    out = Path(out) if out is not None else Path("runs") / "sweeps" / Path(config_path).stem
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    cells = plan_cells(config_path, grid, seeds, out, sets, extra)  # validates every cell: nothing written yet
    index = _index_runs(out / RUNS_DIR)
    jobs = []
    for cell in cells:
        action, run_dir = _pick(index.get(cell["hash"], []))
        if action == "skip":
            cell.update(status="done", run_dir=str(run_dir), action="skipped")
        else:
            cell["action"] = action
            jobs.append((cell, {"action": action, "config": str(config_path), "sets": cell["sets"],
                                "run_dir": str(run_dir) if run_dir else None}))
    if jobs:  # Ray: started or reached (or one UserError), still nothing written; not for a finished sweep
        runner.start([cell for cell, _ in jobs], echo)
    try:
        return _sweep(config_path, grid, seeds, out, sets, extra, cells, jobs, runner, progress, echo)
    finally:
        runner.close()


def _sweep(config_path, grid, seeds, out: Path, sets, extra, cells, jobs, runner, progress: bool,
           echo: Callable) -> dict:
    try:
        (out / RUNS_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {out}: cannot create folder ({exc.strerror})") from None
    sweep_path = out / SWEEP_FILE

    def save(report=None):
        runs.write_json(sweep_path, _record(config_path, grid, seeds, sets, extra, cells, report))

    save()

    from tqdm.auto import tqdm

    bar = tqdm(total=len(cells), desc="sweep", unit="cell", dynamic_ncols=True, disable=not progress)

    def say(line: str) -> None:
        if progress:
            with tqdm.external_write_mode():
                echo(line)
        else:
            echo(line)

    width = len(str(len(cells)))
    counter = itertools.count(1)

    def finish(cell: dict, outcome: dict | None = None) -> None:
        if outcome is not None:
            cell.update(status=outcome["status"], error=outcome.get("error"))
            if outcome.get("run_dir"):
                cell["run_dir"] = outcome["run_dir"]
            elif cell["run_dir"] is None:  # failed: point at the directory it left, if any
                dirs = _index_runs(out / RUNS_DIR).get(cell["hash"], [])
                cell["run_dir"] = str(dirs[-1]) if dirs else None
            save()
        n = f"[{next(counter):>{width}}/{len(cells)}]"
        if cell["status"] == "done" and cell["action"] == "skipped":
            say(f"{n} skipped  {cell['label']}  (finished: {cell['run_dir']})")
        elif cell["status"] == "done":
            how = {"resume": "trained (resumed)", "restart": "trained (restarted)"}.get(cell["action"], "trained")
            say(f"{n} {how}  {cell['label']}  -> {cell['run_dir']}")
        else:
            say(f"{n} failed   {cell['label']}: {cell['error']}")
        bar.update(1)

    try:
        for cell in cells:
            if cell["status"] == "done":
                finish(cell)
        runner.run(jobs, finish)
    except KeyboardInterrupt:
        echo(f"sweep interrupted; run the same command again to continue ({sweep_path})")
        raise
    finally:
        bar.close()

    failed = [c for c in cells if c["status"] != "done"]
    report_path = _report([c for c in cells if c["status"] == "done"], out, echo)
    save(report_path)
    echo(f"sweep: {len(cells) - len(failed)} of {len(cells)} cells finished"
         + (f", {len(failed)} failed" if failed else "") + f"; {sweep_path}")
    return dict(_record(config_path, grid, seeds, sets, extra, cells, report_path), failed=len(failed))


def label_extra_cells(rep: dict, done: list[dict]) -> None:
    """Append ``[--cell ...]`` to the label of every report group made of ``--cell`` runs only.

    A run's label comes from its resolved config (``architecture + weighting``, after the
    domain's ``label_prefix``), so an extra cell that differs from another cell only in a key
    the label leaves out (``domain.update``, ``optimizer.lr``) would read the same."""
    texts = {str(c["run_dir"]): c["extra"] for c in done}
    labels = {}
    for group in rep["groups"]:
        found = {texts.get(str(d)) for d in group["run_dirs"]}
        if len(found) == 1 and None not in found:
            group["label"] = labels[group["group"]] = f"{group['label']} [--cell {found.pop()}]"
    for comparison in rep["comparisons"]:
        comparison["label"] = labels.get(comparison["group"], comparison["label"])
        comparison["baseline_label"] = labels.get(comparison["baseline_group"], comparison["baseline_label"])


def _report(done: list[dict], out: Path, echo: Callable) -> str | None:
    """The aggregated report over the finished cells (seeds of one config grouped); its path."""
    from mtl_platform.report import FORMATS, build_report, grid_table, load_results, render_terminal, write_report

    if not done:
        echo("sweep: no finished cells, no report")
        return None
    try:
        rep = build_report(load_results([c["run_dir"] for c in done]))
    except (ValueError, UserError) as exc:
        echo(f"sweep: no report: {exc}")
        return None
    label_extra_cells(rep, done)
    echo(render_terminal(rep))
    paths = write_report(rep, out, FORMATS)
    table = grid_table(done, rep)
    if table:
        atomic_write_text(out / "grid.md", table + "\n")
        echo(table)
    md = next((p for p in paths if p.name == "report.md"), paths[0])
    echo(f"report: {md}")
    return str(md)
