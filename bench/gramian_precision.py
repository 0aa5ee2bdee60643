"""What accumulating task Gramians in float64 costs (``mtl_platform.gradients.combine.gramian``).

    python bench/gramian_precision.py [--tasks 2 8 16 40] [--params 11200000] [--repeats 5]

For a float32 Jacobian of m rows and P columns (P = 11.2 M: ResNet-18's parameters), times
the float32 product ``J @ J.T`` and the chunked float64 accumulation the engine now uses, each
repeat interleaved, and reports both against the time of one EW training step of the ResNet-18
benchmark model (batch 8, 64 px, m linear heads) measured in the same process. Prints a
markdown table for bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from mtl_platform.gradients.combine import gramian

from weightings import resnet_setup  # the ResNet-18 benchmark model of bench/weightings.py


def timed(fn, repeats):
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, nargs="+", default=[2, 8, 16, 40])
    parser.add_argument("--params", type=int, default=11_200_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = torch.device("cpu")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, P = {args.params:,}\n")
    print("| m | float32 J Jᵀ (ms) | float64-accumulated (ms) | ratio | EW step (ms) | float64 Gramian / EW step |")
    print("|---|---|---|---|---|---|")
    for m in args.tasks:
        jac = torch.randn(m, args.params)
        model, _, losses = resnet_setup(m, device)
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)

        def ew_step():
            opt.zero_grad(set_to_none=True)
            sum(losses().values()).backward()
            opt.step()

        ew_step()
        single, double, step = [], [], []
        for _ in range(args.repeats):  # interleaved, so load changes hit all three alike
            single += timed(lambda: jac @ jac.T, 1)
            double += timed(lambda: gramian(jac), 1)
            step += timed(ew_step, 1)
        s, d, e = (1000 * statistics.median(v) for v in (single, double, step))
        print(f"| {m} | {s:.1f} | {d:.1f} | {d / s:.2f}x | {e:.1f} | {d / e:.2f} |")


if __name__ == "__main__":
    main()
