"""Gramians for the solver tests: the hard families (``hard_jacobians``) in float64 and float32
and five more in float64 (duplicated rows, rank one with signed scales, a zero row among
conflicting gradients, conflicting gradients, the same with norms over 1e-3…1e3), at
m = 2, 3, 5, 8, 13, 21, 40: 203 in all; the Gramian of ``bench/solver_calls.py``; a counter of
matrix factorisations (the cost of an active-set solver is about one per step).
"""
from __future__ import annotations

import torch

from hard_jacobians import FAMILIES, hard_jacobian

F64 = torch.float64
SIZES = (2, 3, 5, 8, 13, 21, 40)
EXTRA = ("duplicated_rows", "rank_one", "zero_row_conflict", "conflict", "scaled_conflict")


def extra_jacobian(kind, m, seed):
    gen = torch.Generator().manual_seed(7919 * seed + 31 * m + EXTRA.index(kind))
    j = torch.randn(m, 60, generator=gen, dtype=F64)
    if kind == "duplicated_rows":        # the second half repeats the first
        j[m // 2:] = j[: m - m // 2].clone()
    elif kind == "rank_one":             # one direction, signed scales: opposite pairs, singular G
        j = torch.randn(m, 1, generator=gen, dtype=F64) * j[:1]
    elif kind == "zero_row_conflict":    # a zero gradient among conflicting ones
        j = j - 0.9 * j.mean(0)
        j[m // 3] = 0.0
    elif kind == "conflict":             # mean pulled out: many negative inner products
        j = j - 0.9 * j.mean(0)
    elif kind == "scaled_conflict":      # the same, norms over 1e-3 … 1e3
        j = (j - 0.9 * j.mean(0)) * 10 ** (6 * torch.rand(m, 1, generator=gen, dtype=F64) - 3)
    return j


def gramians():
    """(label, Gramian): the hard families in float64 and float32, the extra ones in float64."""
    for m in SIZES:
        for kind in FAMILIES:
            for dtype in (F64, torch.float32):
                j = hard_jacobian(kind, m, dtype, seed=1)
                yield f"{kind}-m{m}-{dtype}", j @ j.T
        for kind in EXTRA:
            j = extra_jacobian(kind, m, seed=1)
            yield f"{kind}-m{m}", j @ j.T


CASES = list(gramians())


def bench_gram(m, seed=0):
    """bench/solver_calls.py's Gramian: m random gradients of length 4,096, one near-opposite pair."""
    gen = torch.Generator().manual_seed(seed)
    jac = torch.randn(m, 4096, generator=gen, dtype=F64)
    jac[-1] = -0.9 * jac[0] + 0.1 * jac[-1]
    return jac @ jac.T


FACTORISATIONS = ("pinv", "eigh", "cholesky_ex", "cholesky", "solve", "lstsq", "inv", "inv_ex", "lu_factor")


def count_factorisations(monkeypatch):
    """Wrap torch.linalg's factorising functions so that each call (one batched factorisation) is
    counted; returns the counter, a dict with key ``n``."""
    count = {"n": 0}
    for name in FACTORISATIONS:
        original = getattr(torch.linalg, name)

        def counted(*args, _original=original, **kwargs):
            count["n"] += 1
            return _original(*args, **kwargs)
        monkeypatch.setattr(torch.linalg, name, counted)
    return count
