"""Step time of the SDG methods on the same batches (K = 3), as ratios to ERM.

    python bench/sdg_step_time.py [--config configs/sdg/digits.yaml] [--steps 20] [--rounds 5]

Every method trains from the same initial model on the same source batches; the rounds are
interleaved (ERM, ERM + augmentation, Agr-Sum, DGE sum, DGE sequential, PCGrad, then again) so
a loaded machine slows them alike. A step is the domain's whole ``train_step``: K augmentations,
K forward passes, the engine, the optimizer step(s). Also timed: K − 1 optimizer steps alone
(write a gradient, ``step``) on the same model, the cost the sequential form adds over the
summed one by construction. Prints a markdown table of medians for bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from mtl_platform import registry as registry_mod
from mtl_platform.batches import to_device
from mtl_platform.config import apply_overrides, read_yaml, resolve
from mtl_platform.experiment import build_experiment

METHODS = {
    "ERM (no augmentation)": ["domain.synthesis=plain", "weighting.name=ew"],
    "ERM + augmentation (ew)": ["weighting.name=ew"],
    "Agr-Sum": ["weighting.name=agr_sum"],
    "DGE, sum": ["weighting.name=equilibrium"],
    "DGE, sequential": ["weighting.name=equilibrium", "domain.update=sequential"],
    "PCGrad": ["weighting.name=pcgrad"],
}


def build(config: str, sets: list[str], registry):
    raw, _ = apply_overrides(read_yaml(config), ["train.device=cpu", "baselines.stl=false", *sets])
    exp = build_experiment(resolve(raw, registry), registry)
    return exp


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/sdg/digits.yaml")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    registry, _ = registry_mod.load()
    exps = {name: build(args.config, sets, registry) for name, sets in METHODS.items()}
    first = exps["ERM + augmentation (ew)"]
    state = first.model.state_dict()
    for exp in exps.values():  # the same initial weights (ERM's one head is the shared classifier)
        own = exp.model.state_dict()
        exp.model.load_state_dict({k: state[k] if k in state else state["heads.aug0." + k.split(".", 2)[2]]
                                   for k in own})
        exp.model.train()
    batches = [to_device(b, first.device) for _, b in zip(range(args.steps), first.domain.loaders("train", 0))]
    # ERM reads the same batches: its synthesis (plain) ignores the keys
    times: dict[str, list[float]] = {name: [] for name in exps}
    for r in range(args.rounds + 1):  # round 0 warms up
        for name, exp in exps.items():
            start = time.perf_counter()
            for b in batches:
                exp.domain.train_step(b, exp.model, exp.engine, exp.optimizers)
            if r:
                times[name].append((time.perf_counter() - start) / len(batches))
    # K − 1 optimizer steps alone, on the DGE model: what the sequential form adds by construction
    exp = exps["DGE, sum"]
    params = [p for p in exp.model.parameters() if p.requires_grad]
    k = len(exp.domain.task_names)
    opt_times = []
    for _ in range(args.rounds * len(batches)):
        start = time.perf_counter()
        for _ in range(k - 1):
            for p in params:
                p.grad = torch.zeros_like(p)
            for opt in exp.optimizers:
                opt.step()
        opt_times.append(time.perf_counter() - start)
    erm = statistics.median(times["ERM (no augmentation)"])
    summed = statistics.median(times["DGE, sum"])
    print(f"| method | step (ms) | vs ERM |\n|---|---|---|")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"| {name} | {1000 * med:.1f} | {med / erm:.2f}x |")
    extra = statistics.median(opt_times)
    seq = statistics.median(times["DGE, sequential"])
    print(f"\nK − 1 = {k - 1} extra optimizer steps alone: {1000 * extra:.1f} ms; "
          f"sequential − sum: {1000 * (seq - summed):.1f} ms")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
