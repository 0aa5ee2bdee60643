"""Step time of the retrieval domain's update protocol on one CPU thread (issue 22).

    python bench/retrieval_step.py [--steps 5] [--rounds 4] [--config configs/retrieval/css_synthetic.yaml]

Two tables, each step = the domain's ``train_step`` on one training batch of the config (batch 64,
32×32 scenes, the default TIRG sizes), the median over ``--rounds`` interleaved rounds of ``--steps``
timed steps of every variant, after a warm-up step each:
1. clean + perturbed (Gaussian σ = 0.3) per weighting, against clean-only TIRG with EW;
2. the cost of each training perturbation (EW): the whole step and the attack alone
   (``Retrieval.perturb``), against the clean-only step.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from mtl_platform import registry as registry_mod
from mtl_platform.batches import to_device
from mtl_platform.config import apply_overrides, read_yaml, resolve
from mtl_platform.experiment import build_domain, build_experiment

SMALL = ["domain.data.train_scenes=100", "domain.data.val_scenes=2", "domain.data.test_scenes=2",
         "train.device=cpu", "baselines.stl=false"]


def experiment(config: str, sets: list[str]):
    registry, _ = registry_mod.load()
    raw, _ = apply_overrides(read_yaml(config), [*SMALL, *sets])
    cfg = resolve(raw, registry)
    domain = build_domain(cfg, registry)
    return build_experiment(cfg, registry, domain)


def timers(config: str, sets: list[str]):
    """(step, attack) callables of one variant: the domain's ``train_step`` cycling over the
    training batches, and the attack alone (None when no perturbation is trained)."""
    exp = experiment(config, sets)
    d = exp.domain
    batches = [to_device(b, exp.device) for b in d.loaders("train", epoch=0)]
    exp.model.train()
    it = iter(range(10 ** 9))

    def step():
        d.train_step(batches[next(it) % len(batches)], exp.model, exp.engine, exp.optimizers)

    def attack():
        d.perturb(batches[0], exp.model)

    return step, (attack if d.trains_perturbed else None)


def interleaved(fns: dict, steps: int, rounds: int) -> dict[str, float]:
    """Median ms per call of each callable: a warm-up call each, then ``rounds`` rounds in which
    every callable runs ``steps`` timed calls in turn (a load change on a shared machine hits all
    variants alike)."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            for _ in range(steps):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(t) for name, t in times.items()}


PERTURBATIONS = (("gaussian σ=0.3", "{name: gaussian, sigma: 0.3}"), ("fgsm", "{name: fgsm}"),
                 ("pgd-3", "{name: pgd, steps: 3}"), ("pgd-10", "{name: pgd, steps: 10}"))
WEIGHTINGS = ("ew", "gh", "gh_plus_plus", "pcgrad")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/retrieval/css_synthetic.yaml")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per variant per round")
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(1)
    fns = {"clean only, ew": timers(args.config, ["domain.tasks=[clean]"])[0]}
    for w in WEIGHTINGS:
        fns[f"clean + perturbed (gaussian), {w}"] = timers(args.config, [f"weighting.name={w}"])[0]
    for name, pert in PERTURBATIONS:
        step, attack = timers(args.config, [f"domain.perturbation={pert}"])
        fns[f"step, {name}"], fns[f"attack, {name}"] = step, attack
    ms = interleaved(fns, args.steps, args.rounds)
    base = ms["clean only, ew"]
    print(f"{args.rounds} interleaved rounds x {args.steps} steps, medians, one thread\n")
    print("| training | ms/step | × clean-only |\n|---|---|---|")
    print(f"| clean only, ew | {base:.1f} | 1.00 |")
    for w in WEIGHTINGS:
        v = ms[f"clean + perturbed (gaussian), {w}"]
        print(f"| clean + perturbed (gaussian), {w} | {v:.1f} | {v / base:.2f} |")
    print("\n| perturbation (ew) | ms/step | × clean-only | attack alone, ms | attack × clean-only step |")
    print("|---|---|---|---|---|")
    for name, _ in PERTURBATIONS:
        step, attack = ms[f"step, {name}"], ms[f"attack, {name}"]
        print(f"| {name} | {step:.1f} | {step / base:.2f} | {attack:.1f} | {attack / base:.2f} |")


if __name__ == "__main__":
    main()
