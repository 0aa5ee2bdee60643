"""Synthetic multi-task regression (Yue, PhD thesis 2023, §5.4.11; spec thesis.md §3.9).

    a_t = A_t[ (x + δ_t) · Z_t / φ ],     y_t = s_t · (a_t − μ_t) / σ_t

x ~ N(0, 10) (n × d, shared by all tasks), δ_t ~ N(0, 2) per task and sample, Z ~ N(0, 1)
(d,) shared by the related tasks — an *unrelated* task draws its own Z_t — and φ = d (the
thesis's value; ``phi`` overrides it). A_t ∈ {sinc, bent, square} element-wise. Variances,
not standard deviations (spec [ASSUME]). Procedurally generated: no real data exists.

**Standardised targets.** μ_t and σ_t are the mean and standard deviation of a_t over the
*training* split only; validation and test are shifted and scaled with the same constants,
so a model learns nothing from their statistics. s_t (default 1) is then the target's
standard deviation on the training split: the thesis's experiment 2 multiplies sinc by
1, 2, 3, and a scale applied before standardising would cancel out. The raw targets are
degenerate and are not offered as a domain option: with φ = d, u = (x + δ)·Z/φ has
std √(12 d)/φ ≈ 0.245, so sinc(u) has mean ≈ 0.99 and variance ≈ 1.7e-4, square's variance is
≈ 7e-3; a trained network ended about 140× (sinc) and 1.8× (square) worse on test MSE than
predicting the training mean (docs/conal.md, "The synthetic generator"). ``generate`` still
returns them, for tests of the formula.

**What standardising does not change.** With φ = d, sinc(u) ≈ 1 − u²/6 and square = u², so
after standardising sinc ≈ −square: the best predictors of the two from x correlate at
−1.00 (bench/synthetic_targets.py). The "dissimilar" sinc/bent/square scenario then holds two
tasks that are one function up to sign. A smaller φ spreads u (std √(12 d)/φ; φ = 16 at
d = 200 gives ≈ 3.1, the sized-up configs) so that sinc oscillates and the correlation falls
to ≈ −0.76. The task noise δ_t is invisible to the model and its share of u's variance is
2/12 whatever φ, so the explainable share of the target's variance is at most ≈ 0.83 for
bent, 0.70 for square and 0.70 (φ = d) to 0.51 (φ = 16) for sinc (bench/synthetic_targets.py).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

ACTIVATIONS = ("sinc", "bent", "square")


def activate(name: str, u: Tensor) -> Tensor:
    if name == "sinc":  # sin(u)/u with sinc(0) = 1
        return torch.where(u == 0, torch.ones_like(u), torch.sin(u) / torch.where(u == 0, torch.ones_like(u), u))
    if name == "bent":  # the bent identity
        return (torch.sqrt(u * u + 1) - 1) / 2 + u
    if name == "square":
        return u * u
    raise ValueError(f"unknown activation {name!r}; allowed: {', '.join(ACTIVATIONS)}")


def generate(n: dict[str, int], activations: Sequence[str], unrelated: Sequence[int], dim: int = 200,
             seed: int = 0, phi: float | None = None) -> dict[str, tuple[Tensor, Tensor]]:
    """``{split: (x (n, dim), a (n, m))}``, the *raw* targets a_t = A_t[(x + δ_t)·Z_t/φ]
    (φ = dim unless given); the same Z for every split, fresh x and δ per split."""
    g = torch.Generator().manual_seed(int(seed))
    m = len(activations)
    phi = float(dim if phi is None else phi)
    shared_z = torch.randn(dim, generator=g)
    zs = torch.stack([torch.randn(dim, generator=g) if t in set(unrelated) else shared_z for t in range(m)])
    out = {}
    for split, count in n.items():
        x = math.sqrt(10.0) * torch.randn(count, dim, generator=g)
        delta = math.sqrt(2.0) * torch.randn(m, count, dim, generator=g)
        u = torch.einsum("tnd,td->nt", x.unsqueeze(0) + delta, zs) / phi
        out[split] = (x, torch.stack([activate(activations[t], u[:, t]) for t in range(m)], dim=1))
    return out


def standardise(data: dict[str, tuple[Tensor, Tensor]], scales: Sequence[float],
                reference: str = "train") -> tuple[dict[str, tuple[Tensor, Tensor]], Tensor, Tensor]:
    """``(data with y = s_t·(a − μ_t)/σ_t, μ, σ)``: μ, σ per task from split ``reference`` alone
    (population std), applied with the same constants to every split. σ_t = 0 (a constant
    training target) raises ValueError."""
    ref = data[reference][1]
    mean, std = ref.mean(0), ref.std(0, unbiased=False)
    if not bool((std > 0).all()):
        raise ValueError(f"the {reference} split's targets of tasks "
                         f"{(std <= 0).nonzero().flatten().tolist()} are constant; cannot standardise")
    s = torch.as_tensor(list(scales), dtype=ref.dtype)
    return {split: (x, s * (a - mean) / std) for split, (x, a) in data.items()}, mean, std
