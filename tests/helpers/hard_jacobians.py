"""Families of hard task Jacobians for the weighting property and reference suites.

Each family is a function of (m, dtype, seed) returning an (m × P) Jacobian. They are the
inputs on which weightings have broken before: a zero row beside large ones (DB-MTL's 0·∞),
norms spread over twelve orders of magnitude (Nash-MTL's ridge), near-opposite and exactly
opposite rows (Pareto-stationary points), rank-deficient and identical rows (singular
Gramians), all-huge and all-tiny rows (overflow and underflow of squares in float32).
Every family is built in float64 and rounded once to the requested dtype.
"""
from __future__ import annotations

import torch

P = 40  # columns: enough for m ≤ 10 independent rows


def _rand(gen, *shape):
    return torch.randn(*shape, generator=gen, dtype=torch.float64)


def _unit_rows(gen, m):
    rows = _rand(gen, m, P)
    return rows / rows.norm(dim=1, keepdim=True)


def _signs(m):
    return torch.tensor([(-1.0) ** i for i in range(m)], dtype=torch.float64)[:, None]


def _build(kind: str, m: int, gen) -> torch.Tensor:
    if kind == "random":
        return _rand(gen, m, P)
    if kind == "zero_row":            # one task without gradient, the others large
        jac = 1e3 * _rand(gen, m, P)
        jac[0] = 0.0
        return jac
    if kind == "all_zero":            # a stationary point of every task
        return torch.zeros(m, P, dtype=torch.float64)
    if kind == "spread":              # norms 1e-6 … 1e6, in a random task order
        norms = torch.logspace(-6, 6, m, dtype=torch.float64)[torch.randperm(m, generator=gen)]
        return norms[:, None] * _unit_rows(gen, m)
    if kind == "huge":
        return 1e6 * _unit_rows(gen, m)
    if kind == "tiny":
        return 1e-6 * _unit_rows(gen, m)
    if kind == "near_opposite":       # ±base, up to 1e-4 relative noise
        return _signs(m) * _rand(gen, P) + 1e-4 * _rand(gen, m, P)
    if kind == "exactly_opposite":    # ±base: 0 lies in the hull (Pareto stationary)
        return _signs(m) * _rand(gen, P)
    if kind == "rank_deficient":      # rank min(m, 2)
        return _rand(gen, m, 2) @ _rand(gen, 2, P)
    if kind == "parallel_scaled":     # one direction, positive scales 1e-3 … 1e3
        return torch.logspace(-3, 3, m, dtype=torch.float64)[:, None] * _rand(gen, P)
    if kind == "identical":
        return _rand(gen, P).repeat(m, 1)
    if kind == "near_parallel":
        return _rand(gen, P) + 1e-4 * _rand(gen, m, P)
    raise ValueError(f"unknown family {kind!r}")


FAMILIES = ("random", "zero_row", "all_zero", "spread", "huge", "tiny", "near_opposite", "exactly_opposite",
            "rank_deficient", "parallel_scaled", "identical", "near_parallel")
DTYPES = (torch.float32, torch.float64)
TASK_COUNTS = tuple(range(2, 11))


def hard_jacobian(kind: str, m: int, dtype: torch.dtype = torch.float64, seed: int = 0) -> torch.Tensor:
    """An (m × P) Jacobian of family ``kind``, built in float64 and rounded once to ``dtype``."""
    gen = torch.Generator().manual_seed(1000 * seed + 17 * m + FAMILIES.index(kind))
    return _build(kind, m, gen).to(dtype)


def rounding(dtype: torch.dtype) -> float:
    """A rounding allowance of ``dtype``: 64 units in the last place."""
    return 64 * torch.finfo(dtype).eps
