"""Per-call time of every Gramian weighting's solver on an m × m problem (issue 16, point 2).

    python bench/solver_calls.py --tasks 2 8 40 [--calls 50]

The Gramian is that of m random gradients of length 4,096 with one near-opposite pair (float64,
as the engine hands it over); each weighting answers ``--calls`` times in a row (its state
carried, as in training), after 5 warm-up calls. Prints the median and 90th percentile per
call in ms, one thread.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from mtl_platform import registry
from mtl_platform.contracts import Needs


def gram_of(m: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    jac = torch.randn(m, 4096, generator=g, dtype=torch.float64)
    jac[-1] = -0.9 * jac[0] + 0.1 * jac[-1]
    return jac @ jac.T


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, nargs="+", default=[2, 8, 40])
    ap.add_argument("--calls", type=int, default=50)
    args = ap.parse_args()
    torch.set_num_threads(1)
    reg, _ = registry.load(builtin_only=True)
    names = [c.name for c in reg.components("weighting") if c.cls.needs is Needs.GRAMIAN]
    print("| weighting | " + " | ".join(f"m = {m}: median (p90), ms" for m in args.tasks) + " |")
    print("|---|" + "---|" * len(args.tasks))
    for name in names:
        cells = []
        for m in args.tasks:
            tasks = [f"t{i}" for i in range(m)]
            weighting = reg.get("weighting", name).cls(tasks)
            losses = torch.rand(m, dtype=torch.float64) + 0.5
            times = []
            for call in range(args.calls + 5):
                gram = gram_of(m, call)
                start = time.perf_counter()
                weighting.respond(losses, gram=gram)
                if call >= 5:
                    times.append(time.perf_counter() - start)
            times.sort()
            cells.append(f"{statistics.median(times) * 1e3:.2f} ({times[int(0.9 * len(times))] * 1e3:.2f})")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
