"""The report's figures, drawn with matplotlib (imported only when a figure is drawn: ``mtl --help``
must not pay for it) on the Agg backend, PNGs written atomically: the relative Δ per task, and
the training dynamics from ``diagnostics.jsonl`` (task weights, the fraction of conflicting
task-gradient pairs and the mean pairwise cosine over training steps: the diagnostics of GH
Fig. 2/12 and the PGA cosine traces, for any weighting)."""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

from mtl_platform.atomic import atomic_write_bytes
from mtl_platform.runs import DIAGNOSTICS_FILE


def subplots(*args, **kwargs):
    """``plt.subplots`` on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def png_bytes(fig) -> bytes:
    """``fig`` rendered as PNG bytes; the figure is closed."""
    import matplotlib.pyplot as plt

    try:
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    return buf.getvalue()


def save_png(fig, path: str | os.PathLike) -> None:
    """Render ``fig`` to ``path`` atomically and close it."""
    atomic_write_bytes(Path(path), png_bytes(fig))


#: curves with at most this many points are drawn with markers (one point alone is otherwise invisible)
FEW_POINTS = 30


def marker_for(n: int) -> str | None:
    """A marker for a curve of ``n`` points when there are few, so short runs show every point."""
    return "o" if n <= FEW_POINTS else None


def plot_deltas(report: dict, path: str | os.PathLike) -> None:
    """Write a PNG bar chart of the relative Δ per task (percent, mean ± std over seeds) per group."""
    save_png(delta_figure(report), path)


def delta_figure(report: dict):
    """The bar chart of the relative Δ per task and group; error bars (± std) only for a group of
    several seeds (one seed has no spread to show, so no zero-width bar is drawn)."""
    groups = [g for g in report["groups"] if g["delta_p_percent"] is not None]
    tasks = list(dict.fromkeys(t for g in report["groups"] for t in g["tasks"]))
    width = 0.8 / max(len(groups), 1)
    fig, ax = subplots(figsize=(max(6.0, 1.2 * len(tasks) * max(len(groups), 1)), 4.5))
    for i, group in enumerate(groups):
        stats = [group["tasks"].get(t, {}).get("relative_delta_percent") for t in tasks]
        xs = [k + (i - (len(groups) - 1) / 2) * width for k in range(len(tasks))]
        several = len(group["seeds"]) > 1
        label = group["label"] + (f" ({len(group['seeds'])} seeds, ± std)" if several else " (1 seed)")
        ax.bar(xs, [s["mean"] if s else 0.0 for s in stats], width,
               yerr=[s["std"] if s else 0.0 for s in stats] if several else None, capsize=3, label=label)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set_xlabel("task")
    ax.set_ylabel("relative Δ vs STL (%)")
    ax.set_title("Relative Δ over single-task learning, per task")
    if groups:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no group with a defined Δp (no STL baselines)", transform=ax.transAxes,
                ha="center", va="center")
    return fig


def read_diagnostics(run_dir: str | os.PathLike, stage: str = "main") -> list[dict]:
    path = Path(run_dir) / DIAGNOSTICS_FILE
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            break
        if row.get("stage", "main") == stage:
            rows.append(row)
    return rows


WINDOW = 10


def rolling_mean(values: list[float], window: int = WINDOW) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def plot_training(report: dict, path: str | os.PathLike) -> bool:
    """Write the training-dynamics PNG for every run of the report; False if none logged diagnostics."""
    fig = training_figure(report)
    if fig is None:
        return False
    save_png(fig, path)
    return True


def training_figure(report: dict):
    """Task weights, conflict rate and mean cosine over the diagnosed steps of every run (None
    when no run logged diagnostics). Curves of few points get markers, so a short run's single
    diagnostics row is a visible point, and an axis with nothing to draw says why."""
    runs = []
    for group in report["groups"]:
        for run_dir, seed in zip(group["run_dirs"], group["seeds"]):
            rows = read_diagnostics(run_dir)
            if rows:
                runs.append((f"{group['label']} (seed {seed})", rows))
    if not runs:
        return None
    fig, (ax_w, ax_c, ax_cos) = subplots(1, 3, figsize=(15, 4.2))
    for label, rows in runs:
        steps = [r["step"] for r in rows]
        marker = marker_for(len(steps))
        if all("weights" in r for r in rows):
            for task in rows[0]["weights"]:
                ax_w.plot(steps, [r["weights"][task] for r in rows], marker=marker, label=f"{label}: {task}")
        ax_c.plot(steps, rolling_mean([100 * r["conflict"] for r in rows]), marker=marker, label=label)
        ax_cos.plot(steps, [sum(r["cos"].values()) / max(len(r["cos"]), 1) for r in rows], marker=marker,
                    label=label)
    if not ax_w.lines:
        ax_w.text(0.5, 0.5, "no task weights logged\n(the weighting returns per-block\nweights or a gradient)",
                  transform=ax_w.transAxes, ha="center", va="center")
    ax_w.set(title="task weights", xlabel="step", ylabel="weight")
    ax_c.set(title=f"conflicting task pairs (rolling mean of {WINDOW} logs)", xlabel="step",
             ylabel="% of pairs with cos < 0")
    ax_cos.set(title="mean pairwise gradient cosine", xlabel="step", ylabel="cos")
    ax_cos.axhline(0.0, color="black", linewidth=0.8)
    for ax in (ax_w, ax_c, ax_cos):
        if ax.lines:
            ax.legend(fontsize="small")
    return fig


def curves_figure(report: dict):
    """Per task (one row each), the training loss and the test value of its first Δp metric over
    the epochs of every run (``metrics.jsonl``); None when no run has a metrics row."""
    from mtl_platform.runs import METRICS_FILE, read_jsonl

    runs = []
    for group in report["groups"]:
        for run_dir, seed in zip(group["run_dirs"], group["seeds"]):
            rows = read_jsonl(Path(run_dir) / METRICS_FILE)
            if rows:
                runs.append((f"{group['label']} (seed {seed})", rows))
    tasks = list(dict.fromkeys(t for g in report["groups"] for t in g["tasks"]))
    if not runs or not tasks:
        return None
    fig, axes = subplots(len(tasks), 2, figsize=(12, 3.2 * len(tasks)), squeeze=False)
    for row, task in enumerate(tasks):
        metric = next((m for g in report["groups"] for m, r in g["tasks"].get(task, {}).get("metrics", {}).items()
                       if r["in_delta_p"]), None)
        ax_loss, ax_metric = axes[row]
        for label, rows in runs:
            epochs = [r["epoch"] + 1 for r in rows]
            marker = marker_for(len(epochs))
            losses = [(e, r["train"]["loss"][task]) for e, r in zip(epochs, rows)
                      if task in r.get("train", {}).get("loss", {})]
            if losses:
                ax_loss.plot(*zip(*losses), marker=marker, label=label)
            values = [(e, r["test"][task][metric]) for e, r in zip(epochs, rows)
                      if metric and metric in r.get("test", {}).get(task, {})]
            if values:
                ax_metric.plot(*zip(*values), marker=marker, label=label)
        ax_loss.set(title=f"{task}: training loss", xlabel="epoch", ylabel="loss")
        ax_metric.set(title=f"{task}: test {metric}", xlabel="epoch", ylabel=metric or "")
        for ax in (ax_loss, ax_metric):
            if ax.lines:
                ax.legend(fontsize="small")
    return fig
