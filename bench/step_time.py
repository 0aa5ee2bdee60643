"""Step time of the platform's training step vs a hand-written PyTorch loop, and of each
registered loss weighting vs EW, on MultiMNIST with the HPS LeNet (batch 128).

    python bench/step_time.py [--steps 150] [--repeats 5] [--device cpu]

Prints a markdown table of median step times and ratios; the figures go into bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from mtl_platform import registry
from mtl_platform.batches import to_device
from mtl_platform.config import resolve
from mtl_platform.experiment import build_domain, build_experiment


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_loop(step, batches, device, steps, repeats):
    for b in batches[:10]:  # warm-up
        step(b)
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(steps):
            step(batches[i % len(batches)])
        sync(device)
        times.append((time.perf_counter() - start) / steps)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    reg, _ = registry.load()
    raw = {"domain": {"name": "multi_mnist", "batch_size": 128}, "train": {"device": args.device}}
    config = resolve(raw, reg, name="bench")
    domain = build_domain(config, reg)
    device = torch.device(args.device)
    batches = [to_device(b, device) for b in domain.loaders("train", epoch=0)]

    # hand-written: the same model, Adam, sum of the two cross-entropies
    exp = build_experiment(config, reg, domain)
    model, opt = exp.model, exp.optimizers[0]

    def hand(batch):
        x, y = batch
        opt.zero_grad(set_to_none=True)
        out = model(x)
        (F.cross_entropy(out["left"], y["left"]) + F.cross_entropy(out["right"], y["right"])).backward()
        opt.step()

    rows = [("hand-written PyTorch loop", time_loop(hand, batches, device, args.steps, args.repeats))]
    for name in reg.names("weighting"):
        cfg = resolve(dict(raw, weighting=name), reg, name="bench")
        e = build_experiment(cfg, reg, domain)
        rows.append((f"platform, {name}", time_loop(
            lambda b, e=e: e.domain.train_step(b, e.model, e.engine, e.optimizers),
            batches, device, args.steps, args.repeats)))
    hand_t = rows[0][1]
    ew_t = dict(rows)["platform, ew"]
    print(f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{args.steps} steps x {args.repeats} repeats (median)\n")
    print("| step | ms/step | vs hand-written | vs EW |\n|---|---|---|---|")
    for name, t in rows:
        print(f"| {name} | {t * 1e3:.2f} | {t / hand_t:.2f}x | {t / ew_t:.2f}x |")


if __name__ == "__main__":
    main()
