"""Multi-task SAC on Meta-World MT10 (m = 10): environment steps/s and SAC updates/s per weighting,
and each weighting's update time relative to EW (issue 19). CPU, one thread; the paper-sized
networks (3 stages of 400 units, 128 transitions per task per update), or the networks and batch
of a config's ``domain`` section (``--config``). Usage:

    OMP_NUM_THREADS=1 python bench/rl_throughput.py [--updates 20] [--weightings ew pcgrad ...]
    OMP_NUM_THREADS=1 python bench/rl_throughput.py --config configs/rl/mt10_cpu.yaml
"""
from __future__ import annotations

import argparse
import time

import torch
import yaml

from mtl_platform import registry as registry_mod
from mtl_platform.config import resolve
from mtl_platform.experiment import build_domain, build_experiment

BASE = {"domain": {"name": "metaworld", "benchmark": "MT10", "hidden": 400, "layers": 3, "batch_size": 128,
                   "buffer_size": 5000, "warmup_steps": 1000, "max_episode_steps": 500},
        "architecture": "hps", "optimizer": {"name": "adam", "lr": 3.0e-4}, "scheduler": {"name": "none"},
        "train": {"epochs": 1, "seed": 0, "device": "cpu", "progress": False}, "baselines": {"stl": False}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--updates", type=int, default=20)
    ap.add_argument("--env-steps", type=int, default=300)
    ap.add_argument("--weightings", nargs="+", default=["ew", "pcgrad", "cagrad", "famo", "nash_mtl", "gh"])
    ap.add_argument("--config", help="take hidden, layers and batch_size from this config's domain section")
    args = ap.parse_args()
    torch.set_num_threads(1)
    base = dict(BASE, domain=dict(BASE["domain"]))
    if args.config:
        with open(args.config) as f:
            domain_section = yaml.safe_load(f)["domain"]
        base["domain"].update({k: domain_section[k] for k in ("hidden", "layers", "batch_size") if k in domain_section})
    registry = registry_mod.load()[0]
    domain = build_domain(resolve(dict(base, weighting="ew"), registry), registry)
    rows = []
    for name in args.weightings:
        exp = build_experiment(resolve(dict(base, weighting=name), registry), registry, domain=domain)
        domain.replay = domain.sac = domain.critic_sum = None
        domain.steps, domain.ready, domain.critic_count = 0, None, 0
        t = time.perf_counter()
        for s in range(args.env_steps):  # warm-up: acting and storing only
            exp.domain.train_step(s, exp.model, exp.engine, exp.optimizers)
        env_rate = args.env_steps * len(domain.tasks) / (time.perf_counter() - t)
        domain.steps = base["domain"]["warmup_steps"]  # from here every step also updates
        batch_size = base["domain"]["batch_size"]
        for _ in range(2):  # first calls build solver state
            domain.sac.update(exp.model, domain.replay.sample(batch_size), exp.engine, exp.optimizers)
        t = time.perf_counter()
        for _ in range(args.updates):
            domain.sac.update(exp.model, domain.replay.sample(batch_size), exp.engine, exp.optimizers)
        rows.append((name, env_rate, args.updates / (time.perf_counter() - t)))
    ew = dict((n, u) for n, _, u in rows).get("ew")
    print("| weighting | env steps/s (all tasks, acting only) | updates/s | update time / EW |")
    print("|---|---|---|---|")
    for name, env_rate, ups in rows:
        print(f"| {name} | {env_rate:.0f} | {ups:.2f} | {ew / ups:.2f}× |" if ew else f"| {name} | {env_rate:.0f} | {ups:.2f} | |")


if __name__ == "__main__":
    main()
