"""The safe-MTL report as text: an aligned terminal table, GitHub Markdown, and the report files
(``report.md``, ``report.json``, ``report_delta.png``) written atomically. matplotlib is imported
only when a PNG is drawn (:mod:`mtl_platform.report.plots`)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from mtl_platform.atomic import atomic_write_bytes

from .pareto import PARETO_PLOT, plot_pareto
from .plots import plot_deltas, plot_training

FORMATS = ("md", "json", "png", "html")
#: what ``mtl report`` and a run's ``report.formats`` write when no format is named
DEFAULT_FORMATS = ("md", "json", "png")
_FILES = {"md": "report.md", "json": "report.json", "png": "report_delta.png", "html": "report.html"}
_HEADER = ["task", "metric", "MTL", "STL", "Δ", "safe"]


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
        text += "; " + _parameter_text(model["parameters"])
        if model.get("searched_parameters"):
            text += f"; searched model {model['searched_parameters']['total']:,}"
        lines.append(prefix + text)
    return lines


def _parameter_text(p: dict) -> str:
    """``parameters TOTAL (shared S; task N, ...; frozen F)``, with the parts the run recorded (a
    results file from an older version, or a domain's own model, may lack some)."""
    parts = [f"shared {p['shared']:,}"] if "shared" in p else []
    if p.get("tasks"):
        parts.append(", ".join(f"{t} {n:,}" for t, n in p["tasks"].items()))
    if p.get("frozen"):
        parts.append(f"frozen {p['frozen']:,}")
    return f"parameters {p.get('total', 0):,}" + (f" ({'; '.join(parts)})" if parts else "")


def _num(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


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
    if et is None:
        lines = ["Δp = n/a (no STL baselines)", "η = n/a (no STL baselines)"]
    elif dp is None:
        lines = [f"Δp = n/a ({group['delta_p_undefined']})",
                 f"η = {et['mean']:.0f} %" + (f" ± {et['std']:.0f}" if n > 1 else "")]
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


TRAINING_PLOT = "report_training.png"


def write_report(report: dict, out_dir: str | os.PathLike, formats: Iterable[str] = DEFAULT_FORMATS) -> list[Path]:
    """Write ``report.md``, ``report.json``, ``report_delta.png`` (with the training and Pareto
    figures) and/or the self-contained ``report.html`` atomically; return their paths."""
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
        elif fmt == "html":
            from .html import render_html

            atomic_write_bytes(path, render_html(report).encode())
        else:
            plot_deltas(report, path)
            if plot_training(report, out / TRAINING_PLOT):
                paths.append(out / TRAINING_PLOT)
            runs = sum(len(g["seeds"]) for g in report["groups"])
            if (runs > 1 or any(g.get("known_front") for g in report["groups"])) and \
                    plot_pareto(report, out / PARETO_PLOT):
                paths.append(out / PARETO_PLOT)
        paths.append(path)
    return paths
