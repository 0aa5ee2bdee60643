"""The safe-MTL report (DESIGN.md §7): MTL vs STL per task and metric, Δ, Δp and η over seeds.

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
table has no seed column. matplotlib is imported only by :func:`plot_deltas`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from mtl_platform import metrics
from mtl_platform.atomic import atomic_write_bytes
from mtl_platform.errors import UserError

FORMATS = ("md", "json", "png")
_FILES = {"md": "report.md", "json": "report.json", "png": "report_delta.png"}
_HEADER = ["task", "metric", "MTL", "STL", "Δ", "safe"]
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
            "delta_p": metrics.delta_p(r["mtl"], r["stl"], spec),
            "eta": metrics.eta(r["mtl"], r["stl"], spec),
        }
        for r in runs
    ] if has_stl else []

    tasks = {}
    for task, task_metrics in spec.items():
        rows = {}
        for metric, how in task_metrics.items():
            row = {**how, "mtl": _stat([r["mtl"][task][metric] for r in runs])}
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
    found = [r.get("conflict_rate", conflict_rate(Path(r["run_dir"]))) for r in runs]
    rates = [x for x in found if x is not None]
    out["conflict_percent"] = _stat([100 * x for x in rates]) if len(rates) == len(runs) else None
    if has_stl:
        dp = [s["delta_p"] for s in per_seed]
        et = [s["eta"] for s in per_seed]
        out["delta_p_percent"] = {**_stat(dp), "p_value": metrics.p_value_vs_zero(dp), "per_seed": dp}
        out["eta_percent"] = {**_stat(et), "per_seed": et}
        mean_delta = {task: {metric: row["delta"]["mean"] for metric, row in entry["metrics"].items()}
                      for task, entry in tasks.items()}
        out["eta_of_mean_percent"] = metrics.eta_from_deltas(mean_delta, spec)
    return out


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


def _model_lines(group: dict) -> list[str]:
    lines = []
    for seed, model in zip(group["seeds"], group.get("models") or []):
        if not model.get("parameters"):
            continue
        prefix = f"seed {seed}: " if len(group["seeds"]) > 1 else ""
        derived = model.get("derived") or {}
        text = f"model: {model['architecture']}"
        for key, label in (("branch_points", "branch points"), ("task_weights", "learned task weights")):
            if derived.get(key):
                text += f"; {label} " + ", ".join(f"{t} {_num(v)}" for t, v in derived[key].items())
        if derived.get("margins"):  # how clearly the search decided (stages/margins.py)
            text += "; decision margins (softmax gap) " + ", ".join(
                f"{k} {m['gap']:.3f}" + (" within noise" if m.get("within_noise") else "")
                for k, m in derived["margins"].items())
        gates = (model.get("state") or {}).get("gates")
        if gates:
            text += "; gates α_t " + ", ".join(f"{t} {v:.3f}" for t, v in gates.items())
        p = model["parameters"]
        text += (f"; parameters {p['total']:,} (shared {p['shared']:,}; "
                 + ", ".join(f"{t} {n:,}" for t, n in p["tasks"].items())
                 + (f"; frozen {p['frozen']:,}" if p.get("frozen") else "") + ")")
        if model.get("searched_parameters"):
            text += f"; searched model {model['searched_parameters']['total']:,}"
        lines.append(prefix + text)
    return lines


def _num(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


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


def _fmt(stat: dict | None, n: int, spec: str = ".4g") -> str:
    if stat is None:
        return "n/a"
    text = format(stat["mean"], spec)
    return f"{text} ± {stat['std']:.2g}" if n > 1 else text


def _p(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.3g}"


def _header(group: dict) -> list[str]:
    """The table's columns; with several seeds also in how many of them each row was safe."""
    return _HEADER + (["safe seeds"] if len(group["seeds"]) > 1 else [])


def _table(group: dict) -> list[list[str]]:
    n = len(group["seeds"])
    rows = []
    for task, entry in group["tasks"].items():
        for metric, row in entry["metrics"].items():
            name = f"{metric} {'↑' if row['higher_is_better'] else '↓'}"
            if not row["in_delta_p"]:
                name += " (not in Δp)"
            if row["safe"] is None:
                safe = "n/a"
            elif not row["in_delta_p"]:
                safe = "-"  # shown for information; η counts only the metrics in Δp
            else:
                safe = "safe" if row["safe"] else "UNSAFE"
            cells = [task, name, _fmt(row["mtl"], n), _fmt(row["stl"], n), _fmt(row["delta"], n, "+.4g"), safe]
            if n > 1:
                cells.append(f"{row['safe_seeds']}/{n}" if safe in ("safe", "UNSAFE") else safe)
            rows.append(cells)
    return rows


def _summary(group: dict) -> list[str]:
    n = len(group["seeds"])
    dp, et = group["delta_p_percent"], group["eta_percent"]
    if dp is None:
        lines = ["Δp = n/a (no STL baselines)", "η = n/a (no STL baselines)"]
    else:
        lines = [
            f"Δp = {dp['mean']:+.2f} %" + (f" ± {dp['std']:.2f}" if n > 1 else "") + f" (p = {_p(dp['p_value'])})",
            f"η = {et['mean']:.0f} %" + (
                f" ± {et['std']:.0f} (mean ± std of the per-seed η); η of the mean Δ = "
                f"{group['eta_of_mean_percent']:.0f} % (the safe column)" if n > 1 else ""),
        ]
        per_task = [(task, entry["relative_delta_percent"]) for task, entry in group["tasks"].items()]
        lines.append("relative Δ per task: " + ", ".join(
            f"{task} {_fmt(rel, n, '+.2f')} %" if rel else f"{task} n/a" for task, rel in per_task
        ))
    epochs = [e + 1 for e in group["epochs"]]  # shown 1-based
    shown = f"epoch {epochs[0]}" if len(set(epochs)) == 1 else "epochs " + ", ".join(map(str, epochs))
    lines.append(f"select: {group['select']}, {shown}")
    lines.append("seeds: " + ", ".join(str(s) for s in group["seeds"]))
    if group.get("conflict_percent"):
        lines.append(f"gradient conflict: {_fmt(group['conflict_percent'], n, '.1f')} % of the diagnosed steps "
                     f"had a task pair with negative cosine on the shared parameters")
    return lines + _model_lines(group)


def _comparison_lines(report: dict) -> list[str]:
    return [
        f"{c['label']} vs {c['baseline_label']}: Δp difference "
        + ("n/a" if c["delta_p_difference_percent"] is None else f"{c['delta_p_difference_percent']:+.2f} %")
        + f" (Welch p = {_p(c['p_value'])})"
        for c in report["comparisons"]
    ]


def _title(group: dict) -> str:
    return f"{group['label']} — {group['config_name']} (group {group['group'][:8]})"


def render_terminal(report: dict) -> str:
    """Plain-text report: an aligned table per group, then Δp, η, the reported epoch and seeds."""
    out = []
    for group in report["groups"]:
        header = _header(group)
        rows = [header, *_table(group)]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        out.append(_title(group))
        out += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        out += _summary(group)
        out.append("")
    if report["comparisons"]:
        out += ["comparisons (Welch's t-test on per-seed Δp):", *_comparison_lines(report)]
    return "\n".join(out).rstrip() + "\n"


def render_markdown(report: dict) -> str:
    """The report as GitHub markdown: a table and a summary list per group."""
    out = ["# Safe-MTL report", ""]
    for group in report["groups"]:
        header = _header(group)
        out += [f"## {_title(group)}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(row) + " |" for row in _table(group)]
        out += ["", *(f"- {line}" for line in _summary(group)), ""]
    if report["comparisons"]:
        out += ["## Comparisons (Welch's t-test on per-seed Δp)", ""]
        out += [f"- {line}" for line in _comparison_lines(report)] + [""]
    return "\n".join(out)


def plot_deltas(report: dict, path: str | os.PathLike) -> None:
    """Write a PNG bar chart of the relative Δ per task (percent, mean ± std over seeds) per group."""
    from .figures import save_png, subplots

    groups = [g for g in report["groups"] if g["delta_p_percent"] is not None]
    tasks = list(dict.fromkeys(t for g in report["groups"] for t in g["tasks"]))
    width = 0.8 / max(len(groups), 1)
    fig, ax = subplots(figsize=(max(6.0, 1.2 * len(tasks) * max(len(groups), 1)), 4.5))
    for i, group in enumerate(groups):
        stats = [group["tasks"].get(t, {}).get("relative_delta_percent") for t in tasks]
        xs = [k + (i - (len(groups) - 1) / 2) * width for k in range(len(tasks))]
        ax.bar(xs, [s["mean"] if s else 0.0 for s in stats], width,
               yerr=[s["std"] if s else 0.0 for s in stats], capsize=3, label=group["label"])
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set_xlabel("task")
    ax.set_ylabel("relative Δ vs STL (%)")
    ax.set_title("Relative Δ over single-task learning, per task")
    if groups:
        ax.legend()
    save_png(fig, path)


TRAINING_PLOT = "report_training.png"


def write_report(report: dict, out_dir: str | os.PathLike, formats: Iterable[str] = FORMATS) -> list[Path]:
    """Write ``report.md``, ``report.json`` and/or ``report_delta.png`` atomically; return their paths."""
    formats = list(formats)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown report format {unknown[0]!r}; allowed: {', '.join(FORMATS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out / _FILES[fmt]
        if fmt == "md":
            atomic_write_bytes(path, render_markdown(report).encode())
        elif fmt == "json":
            atomic_write_bytes(path, (json.dumps(report, indent=2, ensure_ascii=False) + "\n").encode())
        else:
            from .training_plots import plot_training

            plot_deltas(report, path)
            if plot_training(report, out / TRAINING_PLOT):
                paths.append(out / TRAINING_PLOT)
        paths.append(path)
    return paths


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
