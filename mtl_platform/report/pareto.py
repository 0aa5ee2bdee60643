"""The Pareto plot (``report_pareto.png``): every run of a 2- or 3-task report in task-metric
space — its trajectory over the epochs (test metrics of each ``metrics.jsonl`` row) and its
final point — with the runs' non-dominated front, the STL point and, when the domain knows it,
the analytic front (``known_front`` in the runs' results, e.g. the ``pareto_toy`` domain).

Each task contributes one metric, the first that counts in Δp; a run dominates another when it
is at least as good on every task and better on one, "better" following the metric's
``higher_is_better``.
"""
from __future__ import annotations

import itertools
import os
from pathlib import Path

from mtl_platform import runs as run_files

from .plots import marker_for, save_png, subplots

PARETO_PLOT = "report_pareto.png"


def axes_metrics(report: dict) -> list[tuple[str, str, bool]] | None:
    """``[(task, metric, higher_is_better)]`` shared by every group, or None unless 2 or 3 tasks."""
    chosen = None
    for group in report["groups"]:
        picked = []
        for task, entry in group["tasks"].items():
            counted = [(m, row["higher_is_better"]) for m, row in entry["metrics"].items() if row["in_delta_p"]]
            if counted:
                picked.append((task, *counted[0]))
        if chosen is None:
            chosen = picked
        elif picked != chosen:
            return None
    return chosen if chosen and 2 <= len(chosen) <= 3 else None


def dominates(a, b, higher: list[bool]) -> bool:
    """``a`` at least as good as ``b`` on every coordinate and better on one."""
    as_good = all((x >= y) if h else (x <= y) for x, y, h in zip(a, b, higher))
    return as_good and any(x != y for x, y in zip(a, b))


def non_dominated(points: list, higher: list[bool]) -> list[int]:
    """Indices of the points no other point dominates."""
    return [i for i, p in enumerate(points) if not any(dominates(q, p, higher) for j, q in enumerate(points) if j != i)]


def run_points(report: dict, axes) -> list[dict]:
    """One entry per run: label, final point, trajectory (test metrics per epoch)."""
    out = []
    for g, group in enumerate(report["groups"]):
        for k, (run_dir, seed) in enumerate(zip(group["run_dirs"], group["seeds"])):
            final = [group["tasks"][t]["metrics"][m]["mtl_per_seed"][k] for t, m, _ in axes]
            rows = run_files.read_jsonl(Path(run_dir) / run_files.METRICS_FILE)
            path = [[r["test"][t][m] for t, m, _ in axes] for r in rows
                    if all(m in r.get("test", {}).get(t, {}) for t, m, _ in axes)]
            out.append({"group": g, "label": f"{group['label']} (seed {seed})", "point": final, "path": path})
    return out


def stl_points(report: dict, axes) -> list[list[float]]:
    """The distinct STL points (mean over each group's seeds)."""
    found = []
    for group in report["groups"]:
        rows = [group["tasks"][t]["metrics"][m] for t, m, _ in axes]
        if all(r["stl"] for r in rows):
            point = [r["stl"]["mean"] for r in rows]
            if point not in found:
                found.append(point)
    return found


def pareto_figure(report: dict):
    """The figure (None when the report's groups do not share 2 or 3 tasks)."""
    axes = axes_metrics(report)
    if axes is None:
        return None
    higher = [h for _, _, h in axes]
    points = run_points(report, axes)
    front = non_dominated([p["point"] for p in points], higher)
    pairs = list(itertools.combinations(range(len(axes)), 2))
    fig, panels = subplots(1, len(pairs), figsize=(6.5 * len(pairs), 5.5), squeeze=False)
    colours = [f"C{i % 10}" for i in range(len(report["groups"]))]
    known = next((g["known_front"] for g in report["groups"] if g.get("known_front")), None)
    for ax, (a, b) in zip(panels[0], pairs):
        if known and [t for t, _, _ in axes] == known["tasks"]:
            xs, ys = zip(*[(p[a], p[b]) for p in known["points"]])
            ax.plot(xs, ys, "--", color="0.5", linewidth=1.5, label="analytic Pareto front")
        for g, group in enumerate(report["groups"]):
            mine = [p for p in points if p["group"] == g]
            for p in mine:
                if len(p["path"]) > 1:
                    ax.plot([q[a] for q in p["path"]], [q[b] for q in p["path"]], color=colours[g], alpha=0.35,
                            linewidth=1, marker=marker_for(len(p["path"])), markersize=2)
            ax.scatter([p["point"][a] for p in mine], [p["point"][b] for p in mine], color=colours[g], s=40,
                       zorder=3, label=group["label"])
        chosen = sorted((points[i]["point"] for i in front), key=lambda p: p[a])
        ax.scatter([p[a] for p in chosen], [p[b] for p in chosen], s=140, facecolors="none", edgecolors="black",
                   linewidths=1.5, zorder=4, label=f"non-dominated runs ({len(front)})")
        if len(axes) == 2 and len(chosen) > 1:  # the front of the runs: a staircase through them
            ax.step([p[a] for p in chosen], [p[b] for p in chosen], where="post" if higher[b] == higher[a] else "pre",
                    color="black", linewidth=1, zorder=2)
        for s in stl_points(report, axes):
            ax.scatter([s[a]], [s[b]], marker="*", s=220, color="gold", edgecolors="black", zorder=5, label="STL")
        name = [f"{t} {m} {'↑' if h else '↓'}" for t, m, h in axes]
        ax.set(xlabel=name[a], ylabel=name[b], title="runs in task-metric space (trajectories: test metrics per epoch)")
        ax.legend(fontsize="small")
    return fig


def plot_pareto(report: dict, path: str | os.PathLike) -> bool:
    """Write ``report_pareto.png``; False when the report is not a 2- or 3-task one."""
    fig = pareto_figure(report)
    if fig is None:
        return False
    save_png(fig, path)
    return True
