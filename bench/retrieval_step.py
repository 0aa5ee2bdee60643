"""Step time of the retrieval domain's update protocol on one CPU thread (issue 22).

    python bench/retrieval_step.py [--steps 20] [--config configs/retrieval/css_synthetic.yaml]

Two tables, each step = the domain's ``train_step`` on one training batch of the config (batch 64,
32×32 scenes, the default TIRG sizes), median of ``--steps`` timed steps after 3 warm-up steps:
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


def median_ms(fn, steps: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def step_time(config: str, sets: list[str], steps: int) -> tuple[float, float]:
    exp = experiment(config, sets)
    d = exp.domain
    batches = [to_device(b, exp.device) for b in d.loaders("train", epoch=0)]
    exp.model.train()
    it = iter(range(10 ** 9))

    def step():
        d.train_step(batches[next(it) % len(batches)], exp.model, exp.engine, exp.optimizers)

    def attack():
        d.perturb(batches[0], exp.model)

    return median_ms(step, steps), (median_ms(attack, steps) if d.trains_perturbed else 0.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/retrieval/css_synthetic.yaml")
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)
    base, _ = step_time(args.config, ["domain.tasks=[clean]"], args.steps)
    print("| training | ms/step | × clean-only |\n|---|---|---|")
    print(f"| clean only, ew | {base:.1f} | 1.00 |")
    for w in ("ew", "gh", "gh_plus_plus", "pcgrad"):
        ms, _ = step_time(args.config, [f"weighting.name={w}"], args.steps)
        print(f"| clean + perturbed (gaussian), {w} | {ms:.1f} | {ms / base:.2f} |")
    print("\n| perturbation (ew) | ms/step | × clean-only | attack alone, ms | attack × clean-only step |")
    print("|---|---|---|---|---|")
    for name, pert in (("gaussian σ=0.3", "{name: gaussian, sigma: 0.3}"), ("fgsm", "{name: fgsm}"),
                       ("pgd-3", "{name: pgd, steps: 3}"), ("pgd-10", "{name: pgd, steps: 10}")):
        ms, attack = step_time(args.config, [f"domain.perturbation={pert}"], args.steps)
        print(f"| {name} | {ms:.1f} | {ms / base:.2f} | {attack:.1f} | {attack / base:.2f} |")


if __name__ == "__main__":
    main()
