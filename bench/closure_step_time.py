"""Step time and peak memory of the closure methods (SAM, PGA, MPGA) against the plain step and
against their floor, on the same batches.

    python bench/closure_step_time.py [--steps 10] [--rounds 5]

Two settings, each from its shipped config with ``train.device=cpu``:
- ``configs/quickstart.yaml`` (MultiMNIST, HPS LeNet, m = 2): plain (ew), SAM, PGA;
- ``configs/synthetic_regression.yaml`` with six sinc tasks and hidden [256, 256] (m = 6):
  plain (ew), SAM, MPGA star, MPGA all.

Every method starts from the same weights and steps through the same batches; rounds are
interleaved (plain, each method, each floor, then again) so a loaded machine slows them alike;
round 0 warms up and is dropped; the table gives medians over rounds of the time per step.
Floors, timed the same way: SAM's is 2 × (forward + backward of the summed loss), the two
passes it needs; PGA's and MPGA's is 2m × (forward + backward of one task's loss), the 2m
passes of spec gradients.md §3.5. Parameter updates are not part of a floor.

Peak memory (``--memory``): each method runs alone in a fresh process; after building the
experiment and its batches the kernel's peak resident set size (VmHWM in /proc/self/status)
is reset (``echo 5 > /proc/self/clear_refs``), and the table shows the peak RSS during the
steps (the first included: gradients and optimizer state are allocated there) minus the RSS
when they started: the CPU memory the steps add, page-granular, through torch's CPU allocator
and glibc (not tracemalloc, which does not see tensor storage).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

from mtl_platform import registry as registry_mod
from mtl_platform.batches import to_device
from mtl_platform.config import apply_overrides, read_yaml, resolve
from mtl_platform.experiment import build_experiment

SETTINGS = {
    "quickstart (m = 2)": ("configs/quickstart.yaml", [], {
        "plain (ew)": [],
        "SAM": ["closure.name=sam"],
        "PGA": ["closure.name=pga"],
    }),
    "synthetic regression (m = 6)": ("configs/synthetic_regression.yaml", [
        "domain.activations=[sinc, sinc, sinc, sinc, sinc, sinc]", "domain.unrelated=[]",
        "domain.hidden=[256, 256]", "domain.batch_size=256"], {
        "plain (ew)": [],
        "SAM": ["closure.name=sam"],
        "MPGA star": ["closure.name=mpga"],
        "MPGA all": ["closure.name=mpga", "closure.neighbourhood=all"],
    }),
}


def build(config: str, sets: list[str], registry):
    raw, _ = apply_overrides(read_yaml(config), ["train.device=cpu", "baselines.stl=false", *sets])
    return build_experiment(resolve(raw, registry), registry)


def step(exp, batch):
    if exp.closure is not None:
        return exp.closure.step(exp.domain.closure(batch, exp.model), exp.engine, exp.optimizers)
    return exp.domain.train_step(batch, exp.model, exp.engine, exp.optimizers)


def floor(exp, batch, passes: int, summed: bool):
    """``passes`` × (forward + backward): of the summed loss, or of one task's loss in turn."""
    tasks = exp.domain.task_names
    for k in range(passes):
        losses = exp.domain.losses(batch, exp.model)
        loss = sum(losses.values()) if summed else losses[tasks[k % len(tasks)]]
        loss.backward()
    for p in exp.model.parameters():
        p.grad = None


def rss_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def memory_of(setting: str, method: str, steps: int) -> float:
    """MiB the timed steps add to the peak RSS (run in this process; call it in a fresh one)."""
    config, base, methods = SETTINGS[setting]
    registry, _ = registry_mod.load()
    exp = build(config, base + methods[method], registry)
    exp.model.train()
    batches = [to_device(b, exp.device) for _, b in zip(range(steps), exp.domain.loaders("train", 0))]
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    start = rss_kib("VmRSS")
    for b in batches:
        step(exp, b)
    return (rss_kib("VmHWM") - start) / 1024


def time_setting(setting: str, steps: int, rounds: int, registry) -> list[dict]:
    config, base, methods = SETTINGS[setting]
    exps = {name: build(config, base + sets, registry) for name, sets in methods.items()}
    first = next(iter(exps.values()))
    state = first.model.state_dict()
    m = len(first.domain.task_names)
    for exp in exps.values():
        exp.model.load_state_dict(state)
        exp.model.train()
    batches = [to_device(b, first.device) for _, b in zip(range(steps), first.domain.loaders("train", 0))]
    floors = {"2 × (forward + summed backward)": (2, True), f"{2 * m} × (forward + one task's backward)": (2 * m, False)}
    times: dict[str, list[float]] = {name: [] for name in [*exps, *floors]}
    for r in range(rounds + 1):
        for name, exp in exps.items():
            start = time.perf_counter()
            for b in batches:
                step(exp, b)
            if r:
                times[name].append((time.perf_counter() - start) / len(batches))
        for name, (passes, summed) in floors.items():
            start = time.perf_counter()
            for b in batches:
                floor(first, b, passes, summed)
            if r:
                times[name].append((time.perf_counter() - start) / len(batches))
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    sam_floor, task_floor = list(floors)
    rows = []
    for name in [*exps, *floors]:
        own_floor = None if name in floors or name.startswith("plain") else (sam_floor if name == "SAM" else task_floor)
        rows.append({"setting": setting, "method": name, "ms": med[name], "vs_plain": med[name] / med["plain (ew)"],
                     "floor": own_floor, "vs_floor": med[name] / med[own_floor] if own_floor else None})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--memory", nargs=2, metavar=("SETTING", "METHOD"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.memory:
        print(json.dumps(memory_of(*args.memory, args.steps)))
        return
    registry, _ = registry_mod.load()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread, steps {args.steps}, rounds {args.rounds}")
    print("| setting | method | ms / step (median) | × plain | × its floor | peak RSS added (MiB) |")
    print("|---|---|---|---|---|---|")
    for setting, (_, _, methods) in SETTINGS.items():
        for row in time_setting(setting, args.steps, args.rounds, registry):
            mem = "-"
            if row["method"] in methods:
                out = subprocess.run([sys.executable, __file__, "--memory", setting, row["method"],
                                      "--steps", str(args.steps)], capture_output=True, text=True, check=True,
                                     env=dict(os.environ, OMP_NUM_THREADS="1"))
                mem = f"{json.loads(out.stdout.strip().splitlines()[-1]):.1f}"
            vs_floor = f"{row['vs_floor']:.2f} ({row['floor']})" if row["vs_floor"] else "-"
            print(f"| {row['setting']} | {row['method']} | {row['ms']:.1f} | {row['vs_plain']:.2f} | {vs_floor} | "
                  f"{mem} |", flush=True)


if __name__ == "__main__":
    main()
