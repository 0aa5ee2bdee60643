"""``mtl sweep``: the Cartesian product of ``--grid`` values × seeds, one ordinary training
run per cell, then one aggregated safe-MTL report.

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
"""
from __future__ import annotations

import itertools
import json
import os
import re
from pathlib import Path
from typing import Callable, Iterable

from . import runs
from .atomic import atomic_write_text
from .config import config_hash, read_yaml
from .errors import UserError

SWEEP_FILE = "sweep.json"
RUNS_DIR = "runs"
# keys the sweep sets itself for every cell
_RESERVED = ("output.root", "output.name")
_MAX_NAME = 150


def _quiet(*args, **kwargs) -> None:
    pass


# -- parsing -----------------------------------------------------------------------------------
def _split_values(text: str) -> list[str]:
    """Split ``V1,V2,...`` on the commas outside brackets and quotes (``[0.9,0.99]`` is one value)."""
    values, current, depth, quote = [], [], 0, None
    for ch in text:
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth = max(depth - 1, 0)
        elif ch == "," and depth == 0:
            values.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    values.append("".join(current).strip())
    return values


def parse_grid(items: Iterable[str]) -> dict[str, list[str]]:
    """``["weighting.name=ew,gh", "optimizer.lr=1e-3,1e-2"]`` → ``{key: [values...]}``.

    Values stay strings: each cell applies them as ``--set KEY=VALUE`` (read as YAML there).
    Commas inside ``[...]``, ``{...}`` or quotes do not split (``optimizer.betas=[0.9,0.99]``).
    """
    grid: dict[str, list[str]] = {}
    for item in items:
        key, eq, rest = item.partition("=")
        key = key.strip()
        if not eq or not key or any(not part for part in key.split(".")):
            raise UserError(f"--grid {item!r}: expected KEY=V1,V2,..., e.g. --grid weighting.name=ew,gh")
        if not rest.strip():
            raise UserError(f"--grid {key}: no values given (expected {key}=V1,V2,...)")
        values = _split_values(rest)
        if any(v == "" for v in values):
            raise UserError(f"--grid {key}={rest}: empty value in the list")
        dup = next((v for i, v in enumerate(values) if v in values[:i]), None)
        if dup is not None:
            raise UserError(f"--grid {key}: value {dup!r} given twice")
        if key in grid:
            raise UserError(f"--grid {key}: given twice (list all its values in one --grid)")
        grid[key] = values
    return grid


def parse_seeds(spec: str | None) -> list[int]:
    """``"0-4"`` → [0, 1, 2, 3, 4]; ``"0,2,5"`` → [0, 2, 5]; ranges and single seeds may mix
    (``"0-2,7"``). None or "" → [] (the config's own seed)."""
    if spec is None or not str(spec).strip():
        return []
    seeds: list[int] = []
    for part in str(spec).split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if lo > hi:
                raise UserError(f"--seeds {spec}: range {part!r} runs backwards (write {hi}-{lo})")
            new = list(range(lo, hi + 1))
        elif re.fullmatch(r"\d+", part):
            new = [int(part)]
        else:
            raise UserError(f"--seeds {spec!r}: expected non-negative seeds like 0-4 or 0,2,5")
        for s in new:
            if s in seeds:
                raise UserError(f"--seeds {spec}: seed {s} given twice")
            seeds.append(s)
    return seeds


def _set_key(item: str) -> str:
    return item.partition("=")[0].strip()


def _yaml_str(value) -> str:
    """A string as a YAML scalar that ``--set`` reads back as exactly this string."""
    return json.dumps(str(value))


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in text)


def cell_name(stem: str, assignment: list[tuple[str, str]]) -> str:
    """``<stem>__weighting.name=gh__train.seed=3``, filesystem-safe and of bounded length."""
    name = _safe("__".join([stem] + [f"{k.rsplit('.', 1)[-1] if k == 'train.seed' else k}={v}"
                                     for k, v in assignment]))
    if len(name) > _MAX_NAME:
        import hashlib

        name = name[:_MAX_NAME - 9] + "_" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return name


# -- run directories ---------------------------------------------------------------------------
def _finished(run_dir: Path) -> bool:
    try:
        json.loads((run_dir / runs.RESULTS_FILE).read_text())
    except (OSError, ValueError):
        return False
    return True


def _has_checkpoint(run_dir: Path) -> bool:
    from .stages.runner import PROGRESS_FILE

    return ((run_dir / runs.CONFIG_FILE).is_file()
            and ((run_dir / PROGRESS_FILE).is_file() or any(run_dir.rglob(runs.CHECKPOINT_FILE))))


def _index_runs(root: Path) -> dict[str, list[Path]]:
    """``{defining config hash: [run dirs, oldest first]}`` of the run directories under ``root``."""
    index: dict[str, list[Path]] = {}
    if not root.is_dir():
        return index
    for run_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            config = read_yaml(run_dir / runs.CONFIG_FILE)
            key = config_hash(config)
        except (UserError, OSError, KeyError, TypeError, AttributeError):
            continue  # not a run directory (or not one of ours)
        index.setdefault(key, []).append(run_dir)
    return index


def _pick(dirs: list[Path]) -> tuple[str, Path | None]:
    """What to do with a cell whose matching run dirs are ``dirs`` (oldest first):
    ("skip" | "resume" | "restart" | "train", run dir or None)."""
    for run_dir in reversed(dirs):
        if _finished(run_dir):
            return "skip", run_dir
    for run_dir in reversed(dirs):
        if _has_checkpoint(run_dir):
            return "resume", run_dir
    if dirs:
        return "restart", dirs[-1]
    return "train", None


# -- one cell ----------------------------------------------------------------------------------
def _run_cell(job: dict) -> dict:
    """Train (or resume) one cell; never raises for a failed run. Also the worker-process entry."""
    if job.get("threads"):
        import torch

        torch.set_num_threads(job["threads"])
    from . import session
    from .trainer import NonFiniteLoss

    try:
        if job["action"] in ("resume", "restart"):  # without a checkpoint the trainer starts afresh
            results = session.train(resume=job["run_dir"], progress=False, echo=_quiet,
                                    extra_plugins=job.get("plugins", ()))
        else:
            results = session.train(job["config"], sets=job["sets"], progress=False, echo=_quiet,
                                    extra_plugins=job.get("plugins", ()))
    except (NonFiniteLoss, UserError) as exc:
        return {"status": "failed", "error": str(exc).strip().replace("\n", " ")}
    except Exception as exc:  # noqa: BLE001 - one failing cell must not stop the others
        text = str(exc).strip().splitlines()
        return {"status": "failed", "error": f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")}
    return {"status": "done", "run_dir": str(results["run_dir"])}


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


# -- the sweep ---------------------------------------------------------------------------------
def plan_cells(config_path, grid: dict[str, list[str]], seeds: list[int], out: Path,
               sets: Iterable[str] = ()) -> list[dict]:
    """Every cell with its overrides and resolved config's defining hash; validates them all."""
    from . import session

    sets = list(sets)
    path = Path(config_path)
    read_yaml(path)  # a missing or malformed CONFIG is one line
    stem = path.stem
    fixed_keys = [_set_key(s) for s in sets]
    for key in list(grid) + fixed_keys:
        if key in _RESERVED:
            raise UserError(f"{key}: set by the sweep for each cell (choose the folder with --out)")
    for key in grid:
        if key in fixed_keys:
            raise UserError(f"{key}: given both as --grid and --set")
    if seeds and ("train.seed" in grid or "train.seed" in fixed_keys):
        raise UserError("train.seed: given with --seeds too (use one of them)")
    root = out / RUNS_DIR
    keys = list(grid)
    cells: list[dict] = []
    seen: dict[str, str] = {}
    for values in itertools.product(*(grid[k] for k in keys)):
        for seed in (seeds or [None]):
            assignment = list(zip(keys, values))
            if seed is not None:
                assignment.append(("train.seed", str(seed)))
            label = " ".join(f"{k}={v}" for k, v in assignment) or "(config as is)"
            name = cell_name(stem, assignment)
            cell_sets = (sets + [f"{k}={v}" for k, v in assignment]
                         + [f"output.root={_yaml_str(root)}", f"output.name={_yaml_str(name)}"])
            try:
                config = session.prepare(path, cell_sets, progress=False)[0]
            except UserError as exc:
                message = str(exc)
                for key in keys:  # a grid value's error is about --grid, not --set
                    message = re.sub(rf"^--set {re.escape(key)}\b", f"--grid {key}", message)
                raise UserError(f"sweep cell {label}: {message}") from None
            key_hash = config_hash(config)
            if key_hash in seen:
                raise UserError(f"sweep cells {seen[key_hash]} and {label} are the same experiment "
                                f"(their resolved configs are equal)")
            seen[key_hash] = label
            cells.append({"name": name, "label": label, "overrides": dict(assignment),
                          "seed": config["train"]["seed"], "sets": cell_sets, "hash": key_hash,
                          "status": "pending", "run_dir": None, "error": None})
    return cells


def _record(config_path, grid, seeds, sets, cells, report=None) -> dict:
    return {
        "config": str(config_path),
        "grid": grid,
        "seeds": seeds,
        "sets": list(sets),
        "cells": [{k: c[k] for k in ("name", "overrides", "seed", "hash", "status", "run_dir", "error")}
                  for c in cells],
        "report": report,
    }


def run_sweep(config_path, grid: dict[str, list[str]], seeds: list[int], out=None, sets: Iterable[str] = (),
              workers: int = 1, progress: bool = True, echo: Callable = print,
              extra_plugins: Iterable = ()) -> dict:
    """Run (or finish) the sweep; return what ``OUT/sweep.json`` holds, plus ``failed`` (count).

    ``out`` defaults to ``runs/sweeps/<config stem>``. ``extra_plugins`` (in-process plugin
    objects, e.g. hook recorders) need ``workers == 1``.
    """
    sets = list(sets)
    seeds = list(seeds or [])
    extra_plugins = list(extra_plugins)
    if not isinstance(workers, int) or workers < 1:
        raise UserError(f"--workers {workers}: must be 1 or more")
    if extra_plugins and workers > 1:
        raise ValueError("extra_plugins need workers == 1 (plugin objects stay in this process)")
    if not grid and not seeds:
        raise UserError("mtl sweep: nothing to sweep; give --grid KEY=V1,V2 and/or --seeds")
    out = Path(out) if out is not None else Path("runs") / "sweeps" / Path(config_path).stem
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    cells = plan_cells(config_path, grid, seeds, out, sets)  # validates every cell: nothing written yet

    try:
        (out / RUNS_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {out}: cannot create folder ({exc.strerror})") from None
    sweep_path = out / SWEEP_FILE

    def save(report=None):
        runs.write_json(sweep_path, _record(config_path, grid, seeds, sets, cells, report))

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
        if workers == 1:
            for cell, job in jobs:
                finish(cell, _run_cell(dict(job, plugins=extra_plugins)))
        elif jobs:
            _run_parallel(jobs, workers, finish)
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
    return dict(_record(config_path, grid, seeds, sets, cells, report_path), failed=len(failed))


def _run_parallel(jobs: list[tuple[dict, dict]], workers: int, finish: Callable) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, _cores() // workers)
    pool = ProcessPoolExecutor(max_workers=min(workers, len(jobs)),
                               mp_context=multiprocessing.get_context("spawn"))
    try:
        futures = {pool.submit(_run_cell, dict(job, threads=threads)): cell for cell, job in jobs}
        for future in as_completed(futures):
            try:
                outcome = future.result()
            except Exception as exc:  # noqa: BLE001 - a worker died (killed, out of memory)
                outcome = {"status": "failed", "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
            finish(futures[future], outcome)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _report(done: list[dict], out: Path, echo: Callable) -> str | None:
    """The aggregated report over the finished cells (seeds of one config grouped); its path."""
    from .report import FORMATS, build_report, grid_table, load_results, render_terminal, write_report

    if not done:
        echo("sweep: no finished cells, no report")
        return None
    try:
        rep = build_report(load_results([c["run_dir"] for c in done]))
    except (ValueError, UserError) as exc:
        echo(f"sweep: no report: {exc}")
        return None
    echo(render_terminal(rep))
    paths = write_report(rep, out, FORMATS)
    table = grid_table(done, rep)
    if table:
        atomic_write_text(out / "grid.md", table + "\n")
        echo(table)
    md = next((p for p in paths if p.name == "report.md"), paths[0])
    echo(f"report: {md}")
    return str(md)
