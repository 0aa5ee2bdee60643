"""Where does CoNAL branch a task unrelated to the others? The search stage on the synthetic
regression generator (thesis §5.4.11; spec thesis.md §3.6, §3.9), three `bent` tasks, task 2
with its own Z, over several seeds; prints each seed's derived branch points and final α.

    python bench/conal_branching.py [--seeds 0 1 2] [--out runs/conal_branching]

Settings: the thesis's synthetic modules (two FC stages of 5 units, P = 3), SGD lr 0.02 for
θ, 30 search epochs; α with Adam lr 0.01 (SGD 0.02 on α leaves α within 0.02 of uniform on
this generator, whose targets vary little). Retraining is cut to one epoch: only the
derived architecture is of interest here.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import yaml

from mtl_platform import session


def config(seed: int, out: str) -> dict:
    return {"domain": {"name": "synthetic_regression", "activations": ["bent", "bent", "bent"], "unrelated": [2],
                       "batch_size": 32, "train_samples": 1000, "hidden": [5, 5]},
            "architecture": {"name": "conal", "search": {"epochs": 30, "lr": 0.02, "alpha_optimizer": "adam",
                                                         "alpha_lr": 0.01}},
            "optimizer": {"name": "sgd", "lr": 0.02, "momentum": 0.0},
            "train": {"epochs": 1, "seed": seed, "device": "cpu", "progress": False},
            "output": {"root": out}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--out", default="runs/conal_branching")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print("| seed | branch point task0 | task1 | task2 (unrelated) | softmax α of task2 |")
    print("|---|---|---|---|---|")
    for seed in args.seeds:
        path = Path(args.out) / f"conal_branching_{seed}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config(seed, args.out)))
        results = session.train(path, progress=False, echo=lambda *a, **k: None)
        derived = results["stages"]["derive"]["derived"]
        p = derived["branch_points"]
        alpha = ", ".join(f"{v:.2f}" for v in derived["alpha"]["task2"])
        print(f"| {seed} | {p['task0']} | {p['task1']} | {p['task2']} | {alpha} |")


if __name__ == "__main__":
    main()
