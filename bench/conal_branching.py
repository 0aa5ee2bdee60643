"""Where does CoNAL branch each task? The search stage on the synthetic regression generator
(thesis §5.4.11; spec thesis.md §3.6, §3.8, §3.9) over several seeds; prints each run's derived
branch points (1: separate networks … 3: the whole encoder shared) and the final softmax(α).

    python bench/conal_branching.py [--seeds 0 1 2] [--scenarios unrelated related dissimilar]
                                    [--no-symmetric-init] [--data-seed 0] [--out runs/conal_branching]

Scenarios: ``unrelated`` — three `bent` tasks, task 2 with its own Z (the issue's check: it
should branch earlier than tasks 0 and 1); ``related`` — three `bent` tasks sharing Z (the
thesis's Fig. 5.6(c): CoNAL shares the encoder); ``dissimilar`` — sinc, bent, square (Fig.
5.6(b): three separate encoders).

Settings: the thesis's synthetic search space (two FC stages, P = 3, ReLU, MSE, SGD lr 0.02
for θ, 30 search epochs) with three changes, each needed for the search to see the tasks at
all, measured here: stages of 16 units instead of 5 and 4,000 training samples instead of
100 (with 5 units or 1,000 samples no path beats predicting the mean, so α follows noise);
α with Adam lr 1e-3 (SGD 0.02 leaves α within 0.02 of uniform on these small targets).
``symmetric_init`` (CoNAL's default) starts every copy and head from the same weights;
``--no-symmetric-init`` draws them independently, the ablation. Retraining is cut to one
epoch: only the derived architecture is of interest here.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import yaml

from mtl_platform import session

SCENARIOS = {"unrelated": (["bent", "bent", "bent"], [2]),
             "related": (["bent", "bent", "bent"], []),
             "dissimilar": (["sinc", "bent", "square"], [])}


def config(seed: int, out: str, scenario: str = "unrelated", symmetric: bool = True, data_seed: int = 0) -> dict:
    activations, unrelated = SCENARIOS[scenario]
    return {"domain": {"name": "synthetic_regression", "activations": activations, "unrelated": unrelated,
                       "batch_size": 32, "train_samples": 4000, "hidden": [16, 16], "data_seed": data_seed},
            "architecture": {"name": "conal", "search": {"epochs": 30, "lr": 0.02, "alpha_optimizer": "adam",
                                                         "alpha_lr": 0.001, "symmetric_init": symmetric}},
            "optimizer": {"name": "sgd", "lr": 0.02, "momentum": 0.0},
            "train": {"epochs": 1, "seed": seed, "device": "cpu", "progress": False},
            "output": {"root": out}}


def search(cfg: dict, path: Path) -> dict:
    """Train ``cfg`` (written to ``path``) and return the derive stage's record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    results = session.train(path, progress=False, echo=lambda *a, **k: None)
    return results["stages"]["derive"]["derived"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--scenarios", nargs="*", default=["unrelated", "related", "dissimilar"], choices=list(SCENARIOS))
    ap.add_argument("--no-symmetric-init", dest="symmetric", action="store_false")
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--out", default="runs/conal_branching")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"symmetric_init: {str(args.symmetric).lower()}, data_seed: {args.data_seed}")
    print("| scenario | seed | branch points (task0, task1, task2) | softmax α task0 | task1 | task2 |")
    print("|---|---|---|---|---|---|")
    for scenario in args.scenarios:
        for seed in args.seeds:
            cfg = config(seed, args.out, scenario, args.symmetric, args.data_seed)
            derived = search(cfg, Path(args.out) / f"{scenario}_{seed}.yaml")
            p = derived["branch_points"]
            alpha = " | ".join(", ".join(f"{v:.2f}" for v in derived["alpha"][t]) for t in ("task0", "task1", "task2"))
            print(f"| {scenario} | {seed} | {p['task0']}, {p['task1']}, {p['task2']} | {alpha} |", flush=True)


if __name__ == "__main__":
    main()
