"""The safe-MTL report's numbers (DESIGN.md §7): MTL vs STL per task and metric, Δ, Δp and η over seeds.

Input is one ``results.json`` per run, as the trainer writes it. Runs sharing ``group`` are
seeds of one experiment; Δ, Δp and η are computed per seed against that run's own STL values,
then shown as mean ± std, with Welch's t-test on the per-seed values (fewer than 3 seeds: n/a).

With several seeds two safeness figures are reported side by side, because they can differ:

- ``eta_percent``: η of each seed (the share of (task, metric) entries with Δ ≥ 0 in that seed,
  DESIGN.md §7), then mean ± std over the seeds;
- ``eta_of_mean_percent``: η of the mean Δ, the share of rows whose *mean* Δ over seeds is
  ≥ 0 — exactly the rows the ``safe`` column marks safe.

A row safe by a small margin in one seed and unsafe by a large one in another raises the
first seed's η, yet its mean Δ is negative, so the safe column and η of the mean Δ count it
unsafe. Each row therefore also carries ``safe_seeds``, the number of seeds in which its Δ
was ≥ 0 (the table's "safe seeds" column, e.g. "1/2"). With one seed the two η agree and the
table has no seed column.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from mtl_platform import metrics
from mtl_platform.errors import UserError

_REQUIRED = ("run_dir", "config_name", "group", "label", "seed", "select", "epoch", "spec", "mtl", "stl")


def _stat(values: Sequence[float]) -> dict[str, float]:
    mean, std = metrics.mean_std(values)
    return {"mean": mean, "std": std}


def _same(group: str, runs: list[dict], what: str, key) -> None:
    for run in runs[1:]:
        if key(run) != key(runs[0]):
            raise ValueError(
                f"runs in group {group!r} have different {what}: {runs[0]['run_dir']} and {run['run_dir']}"
            )


def _group_report(group: str, runs: list[dict]) -> dict:
    _same(group, runs, "task specs", lambda r: r["spec"])
    _same(group, runs, "epoch selection", lambda r: r["select"])
    _same(group, runs, "STL baselines (some are null)", lambda r: r["stl"] is None)
    spec = runs[0]["spec"]
    has_stl = runs[0]["stl"] is not None
    for run in runs:
        metrics.require(run["mtl"], spec, f"MTL ({run['run_dir']})")
    per_seed = [
        {
            "delta": metrics.deltas(r["mtl"], r["stl"], spec),
            "relative": metrics.relative_deltas(r["mtl"], r["stl"], spec),
            "delta_p": _delta_p(r["mtl"], r["stl"], spec),
            "eta": metrics.eta(r["mtl"], r["stl"], spec),
        }
        for r in runs
    ] if has_stl else []

    tasks = {}
    for task, task_metrics in spec.items():
        rows = {}
        for metric, how in task_metrics.items():
            row = {**how, "mtl": _stat([r["mtl"][task][metric] for r in runs]),
                   "mtl_per_seed": [r["mtl"][task][metric] for r in runs]}
            if has_stl:
                seed_deltas = [s["delta"][task][metric] for s in per_seed]
                row["stl"] = _stat([r["stl"][task][metric] for r in runs])
                row["delta"] = _stat(seed_deltas)
                row["safe"] = row["delta"]["mean"] >= 0           # from the mean Δ over seeds
                row["safe_seeds"] = sum(d >= 0 for d in seed_deltas)  # seeds in which this row was safe
            else:
                row.update(stl=None, delta=None, safe=None, safe_seeds=None)
            rows[metric] = row
        relative = [s["relative"][task] for s in per_seed if task in s["relative"]]
        tasks[task] = {"metrics": rows, "relative_delta_percent": _stat(relative) if relative else None}

    out = {
        "group": group,
        "label": runs[0]["label"],
        "config_name": runs[0]["config_name"],
        "seeds": [r["seed"] for r in runs],
        "run_dirs": [r["run_dir"] for r in runs],
        "select": runs[0]["select"],
        "epochs": [r["epoch"] for r in runs],
        "tasks": tasks,
        "delta_p_percent": None,
        "eta_percent": None,
        "eta_of_mean_percent": None,
    }
    out["models"] = [model_summary(r) for r in runs]
    if runs[0].get("known_front"):  # a domain's analytic Pareto front (the pareto_toy), drawn by the Pareto plot
        out["known_front"] = runs[0]["known_front"]
    found = [r.get("conflict_rate", conflict_rate(Path(r["run_dir"]))) for r in runs]
    rates = [x for x in found if x is not None]
    out["conflict_percent"] = _stat([100 * x for x in rates]) if len(rates) == len(runs) else None
    if has_stl:
        dp = [s["delta_p"] for s in per_seed]
        et = [s["eta"] for s in per_seed]
        undefined = [r["seed"] for r, d in zip(runs, dp) if d is None]
        if undefined:  # η and every Δ are still defined; Δp is a ratio to STL values that are all 0
            out["delta_p_undefined"] = (f"every metric in Δp has an STL value of 0 in seed(s) "
                                        f"{', '.join(map(str, undefined))}")
        else:
            out["delta_p_percent"] = {**_stat(dp), "p_value": metrics.p_value_vs_zero(dp), "per_seed": dp}
        out["eta_percent"] = {**_stat(et), "per_seed": et}
        mean_delta = {task: {metric: row["delta"]["mean"] for metric, row in entry["metrics"].items()}
                      for task, entry in tasks.items()}
        out["eta_of_mean_percent"] = metrics.eta_from_deltas(mean_delta, spec)
    return out


def _delta_p(mtl, stl, spec) -> float | None:
    """One seed's Δp, or None where no metric counts (every STL value in Δp is 0, e.g. a
    detector's AP or a policy's success rate at a small budget): the report then says so."""
    try:
        return metrics.delta_p(mtl, stl, spec)
    except ValueError:
        return None


def model_summary(result: dict) -> dict:
    """What a run trained: its architecture, what a search derived, the learned gates and
    task weights, parameter counts of the final and of the searched model."""
    out = {"architecture": (result.get("architecture") or {}).get("name"), "parameters": result.get("parameters"),
           "derived": None, "searched_parameters": None, "state": result.get("state") or None}
    for stage in (result.get("stages") or {}).values():
        if stage.get("derived") is not None:
            out["derived"] = {k: v for k, v in stage["derived"].items() if k != "alpha"}
            out["searched_parameters"] = stage.get("searched_parameters")
    return out


def build_report(results: list[dict]) -> dict:
    """Aggregate run results into a JSON-serialisable report, one entry per group (first-seen order).

    ``epochs`` are 0-based, as in ``results.json``. With several groups, ``comparisons`` holds
    Welch's p-value on per-seed Δp of each later group against the first (None below 3 seeds).
    """
    if not results:
        raise ValueError("no run results to report")
    by_group: dict[str, list[dict]] = {}
    for result in results:
        by_group.setdefault(result["group"], []).append(result)
    groups = [_group_report(group, runs) for group, runs in by_group.items()]

    comparisons = []
    base = groups[0]
    for other in groups[1:]:
        a, b = other["delta_p_percent"], base["delta_p_percent"]
        comparisons.append({
            "group": other["group"],
            "label": other["label"],
            "baseline_group": base["group"],
            "baseline_label": base["label"],
            "delta_p_difference_percent": a["mean"] - b["mean"] if a and b else None,
            "p_value": metrics.p_value_welch(a["per_seed"], b["per_seed"]) if a and b else None,
        })
    return {"groups": groups, "comparisons": comparisons}


def conflict_rate(run_dir: Path) -> float | None:
    """Fraction of the diagnosed training steps (``diagnostics.jsonl`` of the run, or of its
    last stage) where some task pair's gradients had a negative cosine; None without records."""
    files = sorted(run_dir.glob("stages/*/diagnostics.jsonl"), key=lambda p: p.stat().st_mtime)
    path = run_dir / "diagnostics.jsonl" if (run_dir / "diagnostics.jsonl").exists() else (files[-1] if files else None)
    if path is None:
        return None
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    flags = [r["conflict"] > 0 for r in rows if isinstance(r, dict) and isinstance(r.get("conflict"), (int, float))]
    return sum(flags) / len(flags) if flags else None


def load_results(run_dirs: Iterable[str | os.PathLike]) -> list[dict]:
    """Read ``results.json`` from each run directory; a missing or malformed one is a UserError."""
    results = []
    for run_dir in run_dirs:
        path = Path(run_dir) / "results.json"
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise UserError(f"cannot read run results {path}: {e.strerror or e}") from None
        except ValueError as e:
            raise UserError(f"run results {path} are not valid JSON: {e}") from None
        missing = [k for k in _REQUIRED if not isinstance(result, dict) or k not in result]
        if missing:
            raise UserError(f"run results {path} lack {', '.join(missing)}: not written by the trainer?")
        results.append(result)
    return results
