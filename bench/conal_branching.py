"""Where does CoNAL branch each task? The search stage on the synthetic regression generator
(thesis §5.4.11; spec thesis.md §3.6, §3.8, §3.9) over several seeds; prints each run's derived
branch points (1: separate networks … 3: the whole encoder shared), every decision's margin
(softmax gap between the chosen and the runner-up branch point) and a summary per scenario.

    python bench/conal_branching.py --setting faithful|sized_up [--seeds 0 1 2 3 4]
        [--scenarios unrelated related dissimilar similar] [--no-symmetric-init] [--data-seed 0]
        [--phi PHI] [--set KEY=VALUE ...] [--out DIR]
    python bench/conal_branching.py --summarise DIR/results.json ...   # the compact table again

Settings: ``configs/synthetic/<setting>_conal.yaml`` (``faithful``: the thesis's 100 samples,
5-unit modules, φ = d, SGD 0.02 for θ and α, 30 epochs; ``sized_up``: 20,000 samples, 16-unit
modules, φ = 16, α with the platform's default Adam; see the files). Only the scenario's tasks,
the seed and the output folder are changed here; retraining is cut to one epoch and the STL
baselines are skipped: only the derived architecture is of interest.

Scenarios: ``unrelated`` — three `bent` tasks, task 2 with its own Z (it should branch earlier
than tasks 0 and 1); ``related`` — three `bent` tasks sharing Z (thesis Fig. 5.6(c));
``dissimilar`` — sinc, bent, square (Fig. 5.6(b); the thesis: three separate encoders, p = 1);
``similar`` — sinc ×1, ×2, ×3 sharing Z (the thesis: the whole encoder shared, p = 3).
``--no-symmetric-init`` draws every copy and head independently, the ablation; ``--phi``
replaces the setting's φ (e.g. 200 = d, the thesis's, in the sized-up setting); ``--set
domain.train_samples=4000`` (YAML value, dotted key) changes any other key of the setting.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
import yaml

from mtl_platform import session

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("task0", "task1", "task2")
# scenario: (activations, unrelated, scales, the thesis's claim as branch points or None)
SCENARIOS = {"unrelated": (["bent", "bent", "bent"], [2], None, None),
             "related": (["bent", "bent", "bent"], [], None, None),
             "dissimilar": (["sinc", "bent", "square"], [], None, (1, 1, 1)),
             "similar": (["sinc", "sinc", "sinc"], [], [1.0, 2.0, 3.0], (3, 3, 3))}


def config(seed: int, out: str, scenario: str = "unrelated", setting: str = "sized_up", symmetric: bool = True,
           data_seed: int = 0, phi: float | None = None) -> dict:
    """``configs/synthetic/<setting>_conal.yaml`` with the scenario's tasks, ``seed``, one
    retraining epoch, no baselines and runs under ``out`` (``phi``: replaces the setting's φ)."""
    cfg = yaml.safe_load((ROOT / "configs" / "synthetic" / f"{setting}_conal.yaml").read_text())
    activations, unrelated, scales, _ = SCENARIOS[scenario]
    cfg["domain"].update(activations=activations, unrelated=unrelated, scales=scales, data_seed=data_seed)
    if phi is not None:
        cfg["domain"]["phi"] = phi
    cfg["architecture"]["search"]["symmetric_init"] = symmetric
    cfg["train"].update(epochs=1, seed=seed, device="cpu", progress=False)
    cfg["baselines"] = {"stl": False}
    cfg["output"] = {"root": out}
    return cfg


def override(cfg: dict, items: list[str]) -> dict:
    """Apply ``KEY=VALUE`` items (dotted keys, YAML values) to ``cfg``."""
    for item in items:
        key, _, value = item.partition("=")
        *path, last = key.split(".")
        node = cfg
        for part in path:
            node = node.setdefault(part, {})
        node[last] = yaml.safe_load(value)
    return cfg


def search(cfg: dict, path: Path) -> dict:
    """Train ``cfg`` (written to ``path``) and return the derive stage's record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    results = session.train(path, progress=False, echo=lambda *a, **k: None)
    return results["stages"]["derive"]["derived"]


def summary(scenario: str, rows: list[dict]) -> str:
    """One Markdown row: branch points per task over seeds, each task's gap (mean ± std), the
    decisions within noise and whether the thesis's claim held."""
    claim = SCENARIOS[scenario][3]
    cells = []
    for i, t in enumerate(TASKS):
        points = [r["branch_points"][t] for r in rows]
        gaps = [r["margins"][t]["gap"] for r in rows]
        sd = statistics.stdev(gaps) if len(gaps) > 1 else 0.0
        cells.append(f"{t}: p = {', '.join(map(str, points))}; gap {statistics.mean(gaps):.3f} ± {sd:.3f}")
    noise = sum(m["within_noise"] for r in rows for m in r["margins"].values())
    held = "–" if claim is None else f"{sum(tuple(r['branch_points'][t] for t in TASKS) == claim for r in rows)}" \
                                     f" of {len(rows)}"
    return f"| {scenario} | {' <br> '.join(cells)} | {noise} of {3 * len(rows)} | {held} |"


def compact(path: Path) -> str:
    """One Markdown row per scenario of a finished run's ``results.json``: the branch points of
    every seed, the range of the softmax gaps, the decisions within noise and the thesis's claim."""
    data = json.loads(Path(path).read_text())
    lines = []
    for scenario, rows in data["runs"].items():
        claim = SCENARIOS[scenario][3]
        points = " | ".join("(" + ", ".join(str(r["branch_points"][t]) for t in TASKS) + ")" for r in rows)
        gaps = [m["gap"] for r in rows for m in r["margins"].values()]
        noise = sum(m["within_noise"] for r in rows for m in r["margins"].values())
        held = "–" if claim is None else \
            f"{sum(tuple(r['branch_points'][t] for t in TASKS) == claim for r in rows)} of {len(rows)}"
        lines.append(f"| {scenario} | {points} | {min(gaps):.3f}–{max(gaps):.3f} | {noise} of {len(gaps)} | {held} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--summarise", nargs="*", type=Path, help="print the compact table of finished runs and stop")
    ap.add_argument("--setting", choices=("faithful", "sized_up"), default="sized_up")
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4])
    ap.add_argument("--scenarios", nargs="*", default=list(SCENARIOS), choices=list(SCENARIOS))
    ap.add_argument("--no-symmetric-init", dest="symmetric", action="store_false")
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--phi", type=float, default=None, help="replace the setting's φ")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="KEY=VALUE override of the setting")
    ap.add_argument("--out", default="runs/conal_branching")
    args = ap.parse_args()
    if args.summarise:
        for path in args.summarise:
            print(f"{path}\n\n| scenario | " + " | ".join(f"seed {s}" for s in args.seeds)
                  + " | softmax gaps | within noise | thesis's claim held |")
            print("|---" * (len(args.seeds) + 4) + "|")
            print(compact(path) + "\n")
        return
    torch.set_num_threads(1)
    out = Path(args.out)
    print(f"setting: {args.setting}, symmetric_init: {str(args.symmetric).lower()}, data_seed: {args.data_seed}"
          + (f", phi: {args.phi:g}" if args.phi is not None else "") + "".join(f", {x}" for x in args.sets))
    print("| scenario | seed | branch points (task0, task1, task2) | softmax α task0 | task1 | task2 | gaps |")
    print("|---|---|---|---|---|---|---|")
    records = {}
    for scenario in args.scenarios:
        rows = records[scenario] = []
        for seed in args.seeds:
            cfg = override(config(seed, str(out / "runs"), scenario, args.setting, args.symmetric, args.data_seed,
                                  args.phi), args.sets)
            derived = search(cfg, out / f"{scenario}_{seed}.yaml")
            rows.append({"seed": seed, "branch_points": derived["branch_points"], "alpha": derived["alpha"],
                         "margins": derived["margins"]})
            p = derived["branch_points"]
            alpha = " | ".join(", ".join(f"{v:.2f}" for v in derived["alpha"][t]) for t in TASKS)
            gaps = ", ".join(f"{derived['margins'][t]['gap']:.3f}" + ("*" if derived["margins"][t]["within_noise"]
                                                                      else "") for t in TASKS)
            print(f"| {scenario} | {seed} | {p['task0']}, {p['task1']}, {p['task2']} | {alpha} | {gaps} |", flush=True)
    print("\n(* within noise: gap below architecture.search.min_margin)\n")
    print("| scenario | branch points over seeds; softmax gap (mean ± std) | decisions within noise "
          "| thesis's claim held |")
    print("|---|---|---|---|")
    for scenario, rows in records.items():
        print(summary(scenario, rows))
    (out / "results.json").write_text(json.dumps({"setting": args.setting, "symmetric_init": args.symmetric,
                                                  "data_seed": args.data_seed, "phi": args.phi, "sets": args.sets,
                                                  "runs": records},
                                                 indent=1))


if __name__ == "__main__":
    main()
