"""MGDA's min-norm solver (``_solvers.min_norm_simplex``, Wolfe's active-set method) with its early
stop, on the 203 random and adversarial Gramians of ``solver_gramians`` at m = 2…40.

The steps are unchanged; what changed is that the loop stops once every problem has converged
(read on the host every few steps) instead of always running its 2m + 6 steps. References:
the optimality condition of the min-norm point (its Frank–Wolfe gap), and the same solver with
the full budget and no host read (``check_every=None``, the solver as it was). The cost is
checked as a count of matrix factorisations per call.
"""
from __future__ import annotations

import pytest
import torch

from mtl_platform_plugins.weightings._solvers import min_norm_simplex, simplex_kkt_gap, working_gram
from mtl_platform_plugins.weightings.mgda import MGDA

from solver_gramians import CASES, bench_gram, count_factorisations

F64 = torch.float64


def scale(gram):
    return float(torch.diagonal(gram).amax()) + 1e-300


@pytest.mark.parametrize("label,gram", CASES, ids=[label for label, _ in CASES])
def test_the_min_norm_point_meets_its_optimality_condition_and_equals_the_full_budget(label, gram):
    g = working_gram(gram)
    w = min_norm_simplex(g)
    assert torch.isfinite(w).all() and (w >= 0).all() and abs(float(w.sum()) - 1) <= 1e-12, label
    # (Gw)_i ≥ wᵀGw for every i: the Frank–Wolfe gap, 0 at the min-norm point. Not for a Gramian
    # rounded to float32: rounding (~1e-7 relative) can make it indefinite, and on the near-parallel
    # and near-opposite families it is larger than the spread of the gradients (the property suite
    # checks those answers against the float64 Gramian of the Jacobian, with a rounding allowance)
    if gram.dtype == F64:
        gap = float(simplex_kkt_gap(g, w)) / scale(g)
        assert gap <= 1e-10, (label, gap)
    full = min_norm_simplex(g, check_every=None)
    diff = w - full
    # ‖(w − w_full)ᵀJ‖²: the update (with a singular G the weights themselves are not unique)
    assert float(diff @ g @ diff) <= 1e-14 * scale(g), (label, float(diff @ g @ diff) / scale(g))


@pytest.fixture
def factorisations(monkeypatch):
    return count_factorisations(monkeypatch)


def test_a_call_at_m40_stops_once_converged(factorisations):
    # all 40 weights are positive at the optimum: Wolfe's first step lands on it; the solver used to
    # run its whole budget anyway, one pseudo-inverse per step, 2m + 6 = 86
    m = 40
    mgda = MGDA([f"t{i}" for i in range(m)])
    mgda.respond(torch.rand(m, dtype=F64) + 0.5, gram=bench_gram(m))
    assert factorisations["n"] <= 4, factorisations["n"]
    assert float(mgda.solver_gap) <= 1e-12


def test_the_full_budget_is_still_available(factorisations):
    min_norm_simplex(bench_gram(8), check_every=None)
    assert factorisations["n"] == 2 * 8 + 6
