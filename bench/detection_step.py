"""Step time of the weightings on a detector, as ratios to torchvision's own training step.

    python bench/detection_step.py [--config configs/detection/digits.yaml] [--steps 5] [--rounds 3]

Every variant starts from the same detector weights and trains on the same batches (training
moves the weights, so each variant keeps its own copy); rounds are interleaved so a loaded
machine slows them alike. Two floors, on the same detector and batches:
- ``torchvision``: the detector's own step, ``sum(detector(images, targets).values()).backward()``
  and the optimizer step (what EW must match);
- ``per-group floor``: one forward and one backward per task group (retain_graph), summed into
  ``.grad``, and the optimizer step (what any per-task-gradient method must at least pay).
A weighting's step is the domain's whole ``train_step`` (forward, engine, optimizer). Prints a
markdown table of medians for bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from mtl_platform import registry as registry_mod
from mtl_platform.batches import to_device
from mtl_platform.config import apply_overrides, read_yaml, resolve
from mtl_platform.experiment import build_domain, build_experiment

WEIGHTINGS = ("ew", "uw", "gh", "gh_plus_plus", "pcgrad", "cagrad", "mgda")


def build(config: str, sets: list[str], registry, domain=None):
    raw, _ = apply_overrides(read_yaml(config), ["train.device=cpu", "baselines.stl=false", *sets])
    cfg = resolve(raw, registry)
    return build_experiment(cfg, registry, domain or build_domain(cfg, registry))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/detection/digits.yaml")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--set", action="append", default=[], help="config overrides, as mtl's --set")
    args = ap.parse_args()
    torch.set_num_threads(1)
    registry, _ = registry_mod.load()
    exps = {}
    for name in WEIGHTINGS:
        exps[name] = build(args.config, [*args.set, f"weighting.name={name}"],
                           registry, next(iter(exps.values())).domain if exps else None)
    first = exps["ew"]
    state = copy.deepcopy(first.model.state_dict())
    for exp in exps.values():
        exp.model.load_state_dict(state)
        exp.model.train()
    domain = first.domain
    batches = [to_device(b, first.device) for _, b in zip(range(args.steps), domain.loaders("train", 0))]

    floors = {}
    for name in ("torchvision", "per-group floor"):
        model = copy.deepcopy(first.model)
        model.load_state_dict(state)
        model.train()
        floors[name] = (model, torch.optim.Adam(model.parameters(), lr=1e-3))

    def torchvision_step(model, opt, batch):
        images, targets = batch
        losses = model.raw_losses(images, targets)
        sum(losses.values()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def per_group_step(model, opt, batch):
        images, targets = batch
        losses = list(model(images, targets).values())
        for i, loss in enumerate(losses):
            loss.backward(retain_graph=i < len(losses) - 1)
        opt.step()
        opt.zero_grad(set_to_none=True)

    times: dict[str, list[float]] = {name: [] for name in [*floors, *exps]}
    for r in range(args.rounds + 1):  # round 0 warms up
        for name in times:
            start = time.perf_counter()
            for batch in batches:
                if name == "torchvision":
                    torchvision_step(*floors[name], batch)
                elif name == "per-group floor":
                    per_group_step(*floors[name], batch)
                else:
                    exp = exps[name]
                    domain.train_step(batch, exp.model, exp.engine, exp.optimizers)
            if r:
                times[name].append((time.perf_counter() - start) / len(batches))
    base, floor = statistics.median(times["torchvision"]), statistics.median(times["per-group floor"])
    print(f"{len(batches)} batches x {args.rounds} rounds, batch {domain.config['batch_size']}, "
          f"{len(domain.task_names)} task groups; medians\n")
    print("| step | ms | / torchvision | / per-group floor |")
    print("|---|---|---|---|")
    for name, ts in times.items():
        t = statistics.median(ts)
        print(f"| {name} | {1000 * t:.0f} | {t / base:.2f} | {t / floor:.2f} |")


if __name__ == "__main__":
    main()
