"""The partial-labels study table (docs/partial_labels.md) from the runs of one ``mtl sweep``.

Usage: python bench/partial_labels_table.py SWEEP_DIR

Reads every ``SWEEP_DIR/runs/*/results.json`` (with its ``config.yaml``) and prints, per
``domain.label_fraction.left`` and task, each weighting's test accuracy (mean ± std over seeds,
every seed listed) and the Welch p-value of the difference between the two weightings; then
the accuracy of a constant predictor (the most frequent class of the test split) per task, the
check that the benchmark is not degenerate.
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import yaml

from mtl_platform.metrics import mean_std, p_value_welch


def collect(sweep: Path) -> dict:
    """{(fraction, weighting): {task: [accuracy per seed, in seed order]}}."""
    rows = defaultdict(lambda: defaultdict(list))
    runs = []
    for results in sorted(sweep.glob("runs/*/results.json")):
        config = yaml.safe_load((results.parent / "config.yaml").read_text())
        fraction = (config["domain"].get("label_fraction") or {}).get("left", 1.0)
        runs.append((float(fraction), config["weighting"]["name"], config["train"]["seed"],
                     json.loads(results.read_text())["mtl"]))
    for fraction, weighting, seed, scores in sorted(runs, key=lambda r: (r[0], r[1], r[2])):
        for task, metrics in scores.items():
            rows[(fraction, weighting)][task].append(metrics["accuracy"])
    return rows


def constant_accuracy(sweep: Path) -> dict:
    """Test accuracy of always answering the most frequent test class, per task (the test split
    of the sweep's resolved config; it does not depend on the seed or the label fraction)."""
    from mtl_platform import registry

    config = yaml.safe_load(next(sweep.glob("runs/*/config.yaml")).read_text())
    section = {k: v for k, v in config["domain"].items() if k != "name"}
    domain = registry.load()[0].get("domain", config["domain"]["name"]).cls(seed=0, **section)
    domain.prepare()
    targets = domain.dataset("test").targets
    return {t: float(y.bincount().max()) / len(y) for t, y in targets.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("sweep", type=Path)
    args = parser.parse_args()
    rows = collect(args.sweep)
    fractions = sorted({f for f, _ in rows}, reverse=True)
    weightings = sorted({w for _, w in rows})
    print("| `left` labels kept | task | " + " | ".join(f"{w} accuracy (mean ± std)" for w in weightings)
          + " | " + " | ".join(f"{w} per seed" for w in weightings) + " | difference | Welch p |")
    print("|---|---|" + "---|" * (2 * len(weightings) + 2))
    for fraction in fractions:
        for task in ("left", "right"):
            values = [rows[(fraction, w)][task] for w in weightings]
            stats = [mean_std(v) for v in values]
            cells = [f"{m:.4f} ± {s:.4f}" for m, s in stats]
            seeds = [", ".join(f"{x:.4f}" for x in v) for v in values]
            diff = stats[1][0] - stats[0][0] if len(stats) == 2 else float("nan")
            p = p_value_welch(values[0], values[1]) if len(values) == 2 else None
            print(f"| {fraction:.0%} | {task} | " + " | ".join(cells) + " | " + " | ".join(seeds)
                  + f" | {diff:+.4f} ({weightings[1]} − {weightings[0]}) | "
                  + ("n/a" if p is None else f"{p:.3f}") + " |")
    print()
    for task, acc in constant_accuracy(args.sweep).items():
        print(f"constant predictor (most frequent test class), {task}: {acc:.4f}")


if __name__ == "__main__":
    main()
