"""Any metrics of a finished `mtl sweep`, one row per cell group, against a reference group.

    python bench/sweep_table.py SWEEP_DIR --task detection --metrics AP,AP50,AP75 --reference weighting.name=ew [--paired]

One row per group of cells that differ only in ``train.seed`` (named by their overrides): each
metric's test value (``results.json``, the selected checkpoint) as mean ± std over the seeds, with
the two-sided Welch p-value of the difference to the reference group (``mtl_platform.metrics.
p_value_welch``; "–" with fewer than 3 seeds on either side); a last column lists the seeds. Every
group is printed, favourable or not, in the sweep's order. The output is a Markdown table.

``--per-seed METRIC`` prints instead one row per group and one column per seed of that metric.

``--paired`` adds, per metric, the mean over seeds of the difference to the reference run of the
same seed and the two-sided one-sample t-test p-value of those differences (a paired t-test:
the runs of one seed share the initial weights and the batch order, so where seeds differ far
more than methods do, the paired test sees what the unpaired Welch test cannot).
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from mtl_platform.metrics import p_value_vs_zero, p_value_welch


def group_name(cell: dict) -> str:
    overrides = {k: v for k, v in (cell.get("overrides") or {}).items() if k != "train.seed"}
    return ", ".join(f"{k}={v}" for k, v in overrides.items()) or "config"


def collect(sweep: Path, task: str, metrics: list[str]) -> dict[str, dict]:
    """{group: {"seeds": [...], metric: [value per seed]}} over the sweep's finished cells."""
    cells = [c for c in json.loads((sweep / "sweep.json").read_text())["cells"] if c["status"] == "done"]
    groups: dict[str, dict] = {}
    for cell in cells:
        results = json.loads((Path(cell["run_dir"]) / "results.json").read_text())
        row = groups.setdefault(group_name(cell), {"seeds": [], **{m: [] for m in metrics}})
        row["seeds"].append(int(cell["overrides"].get("train.seed", results.get("seed", 0))))
        for m in metrics:
            row[m].append(float(results["test"][task][m]))
    return groups


def paired(row: dict, ref: dict, metric: str) -> list[float]:
    """The differences ``row − ref`` of ``metric`` over the seeds both groups ran, in seed order."""
    theirs = dict(zip(ref["seeds"], ref[metric]))
    return [v - theirs[s] for s, v in sorted(zip(row["seeds"], row[metric])) if s in theirs]


def table(groups: dict[str, dict], metrics: list[str], reference: str, digits: int = 3,
          with_paired: bool = False) -> str:
    def stat(values: list[float]) -> str:
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"

    def p(value) -> str:
        return "–" if value is None else f"{value:.2f}"

    ref = groups.get(reference)
    head = ["group"]
    for m in metrics:
        head += [m, "Welch p"] + (["paired Δ", "paired p"] if with_paired else [])
    lines = ["| " + " | ".join(head + ["seeds"]) + " |", "|" + "---|" * (len(head) + 1)]
    for name, row in groups.items():
        mine = name == reference
        cells = [f"{name} (reference)" if mine else name]
        for m in metrics:
            cells += [stat(row[m]), "" if mine or ref is None else p(p_value_welch(row[m], ref[m]))]
            if with_paired:
                diffs = [] if mine or ref is None else paired(row, ref, m)
                cells += ["", ""] if not diffs else [f"{statistics.mean(diffs):+.{digits}f}",
                                                     p(p_value_vs_zero(diffs))]
        cells.append(",".join(str(s) for s in row["seeds"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_seed(groups: dict[str, dict], metric: str, digits: int = 3) -> str:
    """One row per group, one column per seed: every run's value of ``metric``."""
    seeds = sorted({s for row in groups.values() for s in row["seeds"]})
    lines = ["| group | " + " | ".join(f"seed {s}" for s in seeds) + " |", "|" + "---|" * (len(seeds) + 1)]
    for name, row in groups.items():
        value = dict(zip(row["seeds"], row[metric]))
        lines.append(f"| {name} | " + " | ".join(f"{value[s]:.{digits}f}" if s in value else "–" for s in seeds) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep", type=Path)
    ap.add_argument("--task", required=True, help="the results' task entry, e.g. detection")
    ap.add_argument("--metrics", required=True, help="comma-separated metric names")
    ap.add_argument("--reference", required=True, help="the reference group's name, e.g. weighting.name=ew")
    ap.add_argument("--digits", type=int, default=3)
    ap.add_argument("--paired", action="store_true", help="add the paired (same-seed) difference and its p-value")
    ap.add_argument("--per-seed", metavar="METRIC", help="print every run's value of METRIC, one column per seed")
    args = ap.parse_args()
    metrics = [m for m in args.metrics.split(",") if m]
    groups = collect(args.sweep, args.task, metrics)
    if args.reference not in groups:
        raise SystemExit(f"sweep_table: no group named {args.reference!r}; groups: {', '.join(groups)}")
    if args.per_seed:
        print(per_seed(collect(args.sweep, args.task, [args.per_seed]), args.per_seed, args.digits))
        return
    print(table(groups, metrics, args.reference, args.digits, args.paired))


if __name__ == "__main__":
    main()
