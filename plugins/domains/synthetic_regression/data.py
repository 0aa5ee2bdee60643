"""Synthetic multi-task regression (Yue, PhD thesis 2023, §5.4.11; spec thesis.md §3.9).

    y_{t} = s_t · A_t[ (x + δ_t) · Z_t / φ ]

x ~ N(0, 10) (n × d, shared by all tasks), δ_t ~ N(0, 2) per task and sample, Z ~ N(0, 1)
(d,) shared by the related tasks — an *unrelated* task draws its own Z_t — and φ = d.
A_t ∈ {sinc, bent, square} element-wise; s_t an output scale (the thesis's experiment 2
multiplies sinc by 1, 2, 3). Variances, not standard deviations (spec [ASSUME]).
Procedurally generated: no real data exists for this benchmark.
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


def generate(n: dict[str, int], activations: Sequence[str], scales: Sequence[float], unrelated: Sequence[int],
             dim: int = 200, seed: int = 0) -> dict[str, tuple[Tensor, Tensor]]:
    """``{split: (x (n, dim), y (n, m))}``; the same Z for every split, fresh x and δ per split."""
    g = torch.Generator().manual_seed(int(seed))
    m = len(activations)
    shared_z = torch.randn(dim, generator=g)
    zs = torch.stack([torch.randn(dim, generator=g) if t in set(unrelated) else shared_z for t in range(m)])
    out = {}
    for split, count in n.items():
        x = math.sqrt(10.0) * torch.randn(count, dim, generator=g)
        delta = math.sqrt(2.0) * torch.randn(m, count, dim, generator=g)
        u = torch.einsum("tnd,td->nt", x.unsqueeze(0) + delta, zs) / dim
        y = torch.stack([scales[t] * activate(activations[t], u[:, t]) for t in range(m)], dim=1)
        out[split] = (x, y)
    return out
