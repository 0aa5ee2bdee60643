"""What the synthetic generator's targets look like (thesis §5.4.11; spec thesis.md §3.9;
plugins/domains/synthetic_regression/data.py), per activation and φ:

- the raw target A[(x + δ)·Z/φ] on the training split: mean and variance (the degeneracy);
- the largest share of the target's variance any model of x can explain, var(E[a | s]) /
  var(a), where s = x·Z/φ is what the model sees and δ·Z/φ is noise it cannot see;
- the correlation between the activations' best predictors E[a | s] (after standardising,
  ±1 means one function up to sign).

    python bench/synthetic_targets.py [--dim 200] [--phis 200 16]

The last two are Monte Carlo estimates (s and the noise drawn from their laws, ``--draws``
samples of s, ``--noise`` noise draws each); nothing is trained.
"""
from __future__ import annotations

import argparse
import math

import torch

from mtl_platform_plugins.domains.synthetic_regression.data import ACTIVATIONS, activate, generate


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dim", type=int, default=200)
    ap.add_argument("--phis", type=float, nargs="*", default=[200.0, 16.0])
    ap.add_argument("--samples", type=int, default=1000, help="training samples of the raw-target statistics")
    ap.add_argument("--draws", type=int, default=20000)
    ap.add_argument("--noise", type=int, default=200)
    args = ap.parse_args()
    torch.manual_seed(0)
    print("| φ | std(u) | activation | raw mean (train) | raw variance (train) | explainable share | "
          "corr. of best predictors |")
    print("|---|---|---|---|---|---|---|")
    for phi in args.phis:
        raw = generate({"train": args.samples}, list(ACTIVATIONS), [], args.dim, seed=0, phi=phi)["train"][1]
        std_u = math.sqrt(12 * args.dim) / phi
        s = std_u * math.sqrt(10 / 12) * torch.randn(args.draws, 1)
        u = s + std_u * math.sqrt(2 / 12) * torch.randn(args.draws, args.noise)
        best = {}
        share = {}
        for a in ACTIVATIONS:
            values = activate(a, u)
            best[a] = values.mean(1)
            share[a] = (best[a].var() / values.var()).item()
        corr = torch.corrcoef(torch.stack([best[a] for a in ACTIVATIONS]))
        pairs = {a: ", ".join(f"{b} {corr[i, j]:+.2f}" for j, b in enumerate(ACTIVATIONS) if j != i)
                 for i, a in enumerate(ACTIVATIONS)}
        for i, a in enumerate(ACTIVATIONS):
            print(f"| {phi:g} | {std_u:.3f} | {a} | {raw[:, i].mean():.4f} | {raw[:, i].var():.2e} | "
                  f"{share[a]:.2f} | {pairs[a]} |")


if __name__ == "__main__":
    main()
