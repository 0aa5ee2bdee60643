"""The SDG study table of a finished `mtl sweep` on the sdg domain (docs/sdg.md).

    python bench/sdg_table.py SWEEP_DIR

One row per method (a grid value or a --cell), and ERM (the STL baseline every run shares, one
per seed): accuracy on each unseen target and their mean, mean ± std over the seeds; Welch's
p-value of the mean accuracy against ERM; the median over runs of the logged DGE residual
‖Σ_k w_k ŝ_k‖ where the weighting logs it. Every row is printed, favourable or not.
"""
from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from mtl_platform.metrics import p_value_welch


def stat(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def method_of(cell: dict) -> str:
    overrides = dict(cell.get("overrides") or {})
    overrides.pop("train.seed", None)
    return ", ".join(f"{k.split('.')[-1]}={v}" for k, v in sorted(overrides.items())) or "config"


def main(sweep: Path) -> None:
    cells = [c for c in json.loads((sweep / "sweep.json").read_text())["cells"] if c["status"] == "done"]
    runs: dict[str, list[dict]] = defaultdict(list)
    erm: dict[int, dict] = {}  # seed -> the ERM results (one per seed, whichever cache entry holds it)
    targets: list[str] = []
    for cell in cells:
        run = Path(cell["run_dir"])
        results = json.loads((run / "results.json").read_text())
        targets = [t for t in results["spec"]]
        runs[method_of(cell)].append(results)
        for entry in json.loads((run / "baselines.json").read_text()).values():
            found = json.loads((Path(entry["path"]) / "results.json").read_text())
            seed = found["seed"]
            if seed in erm and erm[seed]["test"] != found["test"]:  # two cached ERM runs of one seed
                raise SystemExit(f"ERM seed {seed}: two cached baselines disagree ({entry['path']})")
            erm.setdefault(seed, found)
    rows = {"ERM (STL baseline)": [erm[s] for s in sorted(erm)], **runs}

    def accuracy(results: dict, task: str) -> float:
        return results["test"][task]["accuracy"]

    def mean_accuracy(results: dict) -> float:
        return statistics.mean(accuracy(results, t) for t in targets)

    erm_means = [mean_accuracy(r) for r in rows["ERM (STL baseline)"]]
    print("| method | seeds | " + " | ".join(targets) + " | mean | Δ mean vs ERM (Welch p) | source val |")
    print("|---|---|" + "---|" * (len(targets) + 3))
    for name, results in rows.items():
        means = [mean_accuracy(r) for r in results]
        cells_ = [stat([accuracy(r, t) for r in results]) for t in targets]
        if name.startswith("ERM"):
            versus = "–"
        else:
            p = p_value_welch(means, erm_means)
            versus = f"{statistics.mean(means) - statistics.mean(erm_means):+.3f}" + (f" (p {p:.3f})" if p is not None else "")
        val = stat([r["val"]["source"]["accuracy"] for r in results])
        print(f"| {name} | {len(results)} | " + " | ".join(cells_) + f" | {stat(means)} | {versus} | {val} |")
    residuals = defaultdict(list)
    for cell in cells:
        path = Path(cell["run_dir"]) / "diagnostics.jsonl"
        if path.exists():
            for line in path.read_text().splitlines():
                row = json.loads(line)
                if "weighting" in row and "residual" in row["weighting"]:
                    residuals[method_of(cell)].append(row["weighting"]["residual"])
    for name, values in residuals.items():
        print(f"\n{name}: median logged ‖Σ w ŝ‖ {statistics.median(values):.3g} over {len(values)} diagnosed steps")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
