"""DSMTL's empirical safeness guarantees, measured on a finished ``mtl sweep`` (Yue, PhD thesis
2023, Theorems 6.5.1 and 6.5.3; spec thesis.md §5.3–5.4): every run's final model and every
task's STL model (from the baseline cache the runs recorded) are evaluated on the whole
*training* split, the quantity the theorems bound.

    MTL_CACHE=<the sweep's cache> python bench/dsmtl_safeness.py SWEEP_DIR

Per architecture and seed: each task's training MSE, the learned gates α_t (DSMTL-AL: also
its derived branch points and each decision's softmax gap) and, per seed,
- DSMTL-IL (individual safeness, Thm 6.5.1): every task's training loss ≤ its STL one;
- DSMTL-JL (average safeness, Thm 6.5.3): the average training loss ≤ min(STL's, HPS's);
then mean ± std over seeds and in how many seeds each inequality held. The theorems bound
the optima; a trained model at a fixed budget may miss them, which is what this measures.
DSMTL-AL has no guarantee (thesis §6.6); its row is shown against both bounds for reference.
The mean predictor (the training mean: 0 for standardised targets) is the degeneracy check:
its test MSE is printed next to STL's.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from mtl_platform import registry
from mtl_platform.baselines import cache_root
from mtl_platform.checkpoint import load
from mtl_platform.config import read_yaml
from mtl_platform.experiment import build_architecture, build_domain


def final_stage_dir(run_dir: Path) -> Path:
    """The folder of the run's final model: the last stage with a ``model.pt``, or the run's own."""
    stages = run_dir / "stages.json"
    if stages.exists():
        names = [s if isinstance(s, str) else s["name"] for s in json.loads(stages.read_text())["stages"]]
        for name in reversed(names):
            if (run_dir / "stages" / name / "model.pt").exists():
                return run_dir / "stages" / name
    return run_dir


def train_losses(config: dict, weights: Path, reg) -> dict[str, float]:
    """MSE of the model of ``config`` with ``weights`` over the whole training split, per task."""
    domain = build_domain(config, reg)
    model = build_architecture(config, reg, domain)
    model.load_state_dict(load(weights))
    return {t: v["mse"] for t, v in domain.evaluate(model, "train").items()}


def stl_losses(results: dict, reg, cache: dict) -> dict[str, float]:
    """Each task's STL training MSE, from the cache entries the run recorded (``stl_hashes``;
    each entry holds its resolved config and weights)."""
    out = {}
    for task, key in results["stl_hashes"].items():
        if key not in cache:
            entry = cache_root() / "stl" / key
            cache[key] = train_losses(read_yaml(entry / "config.yaml"), entry / "weights.pt", reg)[task]
        out[task] = cache[key]
    return out


def mean_predictor(config: dict) -> dict[str, float]:
    """Test MSE of predicting each task's training mean."""
    reg, _ = registry.load()
    domain = build_domain(config, reg)
    domain.prepare()
    train, test = domain.dataset("train"), domain.dataset("test")
    y_train = train.get_batch(torch.arange(len(train)))[1]
    y_test = test.get_batch(torch.arange(len(test)))[1]
    return {t: (y_test[t] - y_train[t].mean()).pow(2).mean().item() for t in y_test}


def mean(values) -> float:
    return sum(values) / len(values)


def pm(values: list[float], fmt: str = ".4f") -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean(values):{fmt}} ± {sd:{fmt}}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sweep", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    reg, _ = registry.load()
    sweep = json.loads((args.sweep / "sweep.json").read_text())
    rows, cache = {}, {}
    for cell in sweep["cells"]:
        if cell.get("status") != "done":
            continue
        run_dir = Path(cell["run_dir"])
        results = json.loads((run_dir / "results.json").read_text())
        stage = final_stage_dir(run_dir)
        config = read_yaml(stage / "config.yaml")
        arch = read_yaml(run_dir / "config.yaml")["architecture"]["name"]
        losses = train_losses(config, stage / "model.pt", reg)
        stl = stl_losses(results, reg, cache)
        gates = (results.get("state") or {}).get("gates") or {}
        derived = ((results.get("stages") or {}).get("derive") or {}).get("derived") or {}
        rows.setdefault(arch, {})[results["seed"]] = {
            "train": losses, "stl": stl, "gates": gates, "test": {t: v["mse"] for t, v in results["mtl"].items()},
            "stl_test": {t: v["mse"] for t, v in results["stl"].items()},
            "mean_predictor_test": mean_predictor(config), "branch_points": derived.get("branch_points"),
            "gaps": {t: m["gap"] for t, m in (derived.get("margins") or {}).items()} or None}
    tasks = sorted(next(iter(next(iter(rows.values())).values()))["train"])
    seeds = sorted(next(iter(rows.values())))
    print(f"training MSE (whole training split), mean ± std over seeds {seeds}\n")
    print("| model | " + " | ".join(tasks) + " | average | gates α_t |")
    print("|---|" + "---|" * (len(tasks) + 2))
    stl_rows = next(iter(rows.values()))
    print("| STL | " + " | ".join(pm([stl_rows[s]["stl"][t] for s in seeds]) for t in tasks)
          + f" | {pm([mean(list(stl_rows[s]['stl'].values())) for s in seeds])} | – |")
    for arch, by_seed in rows.items():
        gates = [by_seed[s]["gates"] for s in seeds if by_seed[s]["gates"]]
        gate_text = ", ".join(f"{t} {pm([g[t] for g in gates if t in g], '.3f')}"
                              for t in tasks if any(t in g for g in gates)) or "–"
        print(f"| {arch} | " + " | ".join(pm([by_seed[s]["train"][t] for s in seeds]) for t in tasks)
              + f" | {pm([mean(list(by_seed[s]['train'].values())) for s in seeds])} | {gate_text} |")
    print("\ntest MSE, mean ± std over seeds\n")
    print("| model | " + " | ".join(tasks) + " |")
    print("|---|" + "---|" * len(tasks))
    print("| mean predictor | " + " | ".join(pm([stl_rows[s]["mean_predictor_test"][t] for s in seeds]) for t in tasks)
          + " |")
    print("| STL | " + " | ".join(pm([stl_rows[s]["stl_test"][t] for s in seeds]) for t in tasks) + " |")
    for arch, by_seed in rows.items():
        print(f"| {arch} | " + " | ".join(pm([by_seed[s]["test"][t] for s in seeds]) for t in tasks) + " |")
    for arch, by_seed in rows.items():
        if any(by_seed[s]["branch_points"] for s in seeds):
            print(f"\n{arch}: derived branch points and softmax gaps per seed")
            for s in seeds:
                r = by_seed[s]
                print(f"- seed {s}: " + ", ".join(f"{t} p = {r['branch_points'][t]} (gap {r['gaps'][t]:.3f})"
                                                 for t in tasks))
    print("\nguarantees per seed (training loss)\n")
    print("| model | every task ≤ STL (individual) | average ≤ STL's | average ≤ min(STL's, HPS's) |")
    print("|---|---|---|---|")
    hps = rows.get("hps")
    for arch, by_seed in rows.items():
        ind = [all(by_seed[s]["train"][t] <= by_seed[s]["stl"][t] for t in tasks) for s in seeds]
        avg = [mean(list(by_seed[s]["train"].values())) <= mean(list(by_seed[s]["stl"].values())) for s in seeds]
        both = ["n/a" if hps is None else
                mean(list(by_seed[s]["train"].values())) <= min(mean(list(by_seed[s]["stl"].values())),
                                                               mean(list(hps[s]["train"].values())))
                for s in seeds]
        count = (lambda flags: f"{sum(f is True for f in flags)} of {len(flags)}")
        print(f"| {arch} | {count(ind)} | {count(avg)} | {count(both) if hps else 'n/a'} |")
    (args.sweep / "safeness.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
