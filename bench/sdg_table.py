"""The SDG study table of a finished `mtl sweep` on the sdg domain (docs/sdg.md).

    python bench/sdg_table.py SWEEP_DIR

One row per method (a grid value or a --cell), and ERM (the STL baseline every run shares, one
per seed): accuracy on each unseen target and their mean, mean ± std over the seeds; Welch's
p-value of the mean accuracy against ERM. Then, from the engine's diagnostics (every 50 steps),
how often two synthesised domains' gradients conflicted (a negative cosine) and their pairwise
cosines, and the median logged DGE residual ‖Σ_k w_k ŝ_k‖ where the weighting logs it. Every row
is printed, favourable or not.
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


def adjustment_fires(row: dict, alpha: float = 0.5) -> float:
    """The share of ordered pairs i ≠ j whose specific parts s_k = g_k − ḡ have cos(s_i, s_j) > α
    (where DGE's Eq. 5 would project), from one diagnostics row (norms and pairwise cosines of the
    g_k: the Gramian, and S = (I − 1/K) G (I − 1/K))."""
    tasks = list(row["norm"])
    k = len(tasks)
    gram = [[0.0] * k for _ in range(k)]
    for i, a in enumerate(tasks):
        gram[i][i] = row["norm"][a] ** 2
        for j in range(i + 1, k):
            c = row["cos"][f"{a}|{tasks[j]}"]
            gram[i][j] = gram[j][i] = c * row["norm"][a] * row["norm"][tasks[j]]
    centre = [[(1.0 if i == j else 0.0) - 1.0 / k for j in range(k)] for i in range(k)]
    spec = [[sum(centre[i][a] * gram[a][b] * centre[b][j] for a in range(k) for b in range(k)) for j in range(k)]
            for i in range(k)]
    fired = 0
    for i in range(k):
        for j in range(k):
            if i != j and spec[i][i] > 0 and spec[j][j] > 0:
                fired += spec[i][j] / (spec[i][i] * spec[j][j]) ** 0.5 > alpha
    return fired / (k * (k - 1))


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
    residuals, conflicts, cosines, fires = defaultdict(list), defaultdict(list), defaultdict(list), defaultdict(list)
    for cell in cells:
        path = Path(cell["run_dir"]) / "diagnostics.jsonl"
        if path.exists():
            for line in path.read_text().splitlines():
                row = json.loads(line)
                conflicts[method_of(cell)].append(row["conflict"])
                fires[method_of(cell)].append(adjustment_fires(row))
                cosines[method_of(cell)].extend(row["cos"].values())
                if "weighting" in row and "residual" in row["weighting"]:
                    residuals[method_of(cell)].append(row["weighting"]["residual"])
    print("\n| method | diagnosed steps | domain pairs with a negative cosine | pairwise cosine, median (min) "
          "| pairs (i, j) with cos(s_i, s_j) > 0.5 |")
    print("|---|---|---|---|---|")
    for name in conflicts:
        print(f"| {name} | {len(conflicts[name])} | {100 * statistics.mean(conflicts[name]):.1f} % | "
              f"{statistics.median(cosines[name]):.3f} ({min(cosines[name]):.3f}) | "
              f"{100 * statistics.mean(fires[name]):.1f} % |")
    for name, values in residuals.items():
        print(f"\n{name}: median logged ‖Σ w ŝ‖ {statistics.median(values):.3g} over {len(values)} diagnosed steps")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
