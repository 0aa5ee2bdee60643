"""Distributed data-parallel step time, 1 vs N processes, and the bytes all-reduced per step
for each weighting's needs (issue 20; docs/distributed.md).

    python bench/ddp_scaling.py [--nproc 2] [--steps 30] [--batch 256]

Strong scaling: one global batch of ``--batch`` samples, taken whole by 1 process and split
in N equal shards by N processes (launched here with ``torch.distributed.run``, gloo on the
CPU). Model: an HPS MLP (input 64, encoder 64-256-256-128, m = 3 linear heads). Each step is the
platform's: forward, ``engine.backward``, ``engine.step``. The communication volume is measured
by counting the bytes every ``torch.distributed.all_reduce`` call receives during the steps
(per rank; a ring all-reduce sends about twice that over the wire). Prints one Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

CASES = [("ew", "param"), ("pcgrad", "param"), ("mgda", "param"), ("gh", "param"), ("gh", "rep"),
         ("graddrop", "param")]
TASKS = ["t0", "t1", "t2"]


def measure(nproc: int, steps: int, batch: int) -> list[dict]:
    """Run every case in this process (one rank of ``nproc``); return its timings and bytes."""
    import torch.distributed as dist

    from mtl_platform import distributed, registry
    from mtl_platform.gradients import GradientEngine

    torch.set_num_threads(1)
    distributed.init_from_env("cpu")
    counted = {"bytes": 0}
    if distributed.world() > 1:
        reduce = dist.all_reduce

        def counting(tensor, *args, **kwargs):
            counted["bytes"] += tensor.numel() * tensor.element_size()
            return reduce(tensor, *args, **kwargs)
        dist.all_reduce = counting
    reg = registry.load(builtin_only=True)[0]
    arch = reg.get("architecture", "hps").cls
    rank, world = distributed.rank(), distributed.world()
    rows = []
    for name, mode in CASES:
        torch.manual_seed(0)
        widths = [64, 256, 256, 128]

        def encoder():
            return torch.nn.Sequential(*[torch.nn.Sequential(torch.nn.Linear(a, b), torch.nn.ReLU())
                                         for a, b in zip(widths[:-1], widths[1:])])
        model = arch(TASKS, encoder, lambda t: torch.nn.Linear(widths[-1], 1))
        weighting = reg.get("weighting", name).cls(TASKS)
        engine = GradientEngine(model, weighting, TASKS, mode=mode, echo=lambda m: None)
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        g = torch.Generator().manual_seed(1)
        x, y = torch.randn(batch, widths[0], generator=g), torch.randn(batch, len(TASKS), generator=g)
        per = batch // world
        x, y = x[rank * per:(rank + 1) * per], y[rank * per:(rank + 1) * per]
        times = []
        for step in range(steps + 5):
            if step == 5:
                counted["bytes"] = 0
            distributed.barrier()
            start = time.perf_counter()
            out = model(x)
            losses = {t: ((out[t].squeeze(-1) - y[:, i]) ** 2).mean() for i, t in enumerate(TASKS)}
            engine.backward(losses)
            engine.step([opt])
            times.append(time.perf_counter() - start)
        params = sum(p.numel() for p in model.parameters())
        rows.append({"weighting": name, "mode": mode, "ms": 1e3 * statistics.median(times[5:]),
                     "bytes": counted["bytes"] / steps, "params": params})
    distributed.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--worker", metavar="OUT", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        rows = measure(int(os.environ.get("WORLD_SIZE", "1")), args.steps, args.batch)
        if int(os.environ.get("RANK", "0")) == 0:
            with open(args.worker, "w") as fh:
                json.dump(rows, fh)
        return
    one = measure(1, args.steps, args.batch)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rows.json")
        env = dict(os.environ, OMP_NUM_THREADS="1")
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                        str(args.nproc), __file__, "--worker", out, "--steps", str(args.steps),
                        "--batch", str(args.batch)], check=True, env=env)
        many = json.load(open(out))
    m = len(TASKS)
    print(f"| weighting | mode | 1 process ms/step | {args.nproc} processes ms/step | ratio | "
          f"bytes all-reduced per step per rank | what is reduced |")
    print("|---|---|---|---|---|---|---|")
    for a, b in zip(one, many):
        p = a["params"]
        what = {"ew": f"losses ({m}) + gradients ({p})",
                "rep": f"losses ({m}) + Gramian pieces ({m}x{m}, float64) + gradients ({p})"}.get(
            b["weighting"] if b["weighting"] == "ew" else b["mode"], f"losses ({m}) + Jacobian ({m}x{p})")
        print(f"| {a['weighting']} | {a['mode']} | {a['ms']:.2f} | {b['ms']:.2f} | {b['ms'] / a['ms']:.2f}x | "
              f"{b['bytes']:,.0f} | {what} |")


if __name__ == "__main__":
    main()
