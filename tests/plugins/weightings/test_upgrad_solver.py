"""UPGrad's QP solver (``_solvers.nonneg_qp``: a block-principal-pivoting guess of the support,
then Lawson–Hanson with Cholesky solves) on 200+ random and adversarial Gramians at m = 2…40.

References: the KKT conditions of each projection (every Gramian), and the solver it replaced
(Lawson–Hanson with an eigendecomposition-based pseudo-inverse at every one of its 2m + 4
steps), kept below verbatim as a slow reference and run on the Gramians with m ≤ 13 (all of
them in the ``slow`` run). The cost is checked as a count of matrix factorisations per call.
"""
from __future__ import annotations

import pytest
import torch

from mtl_platform.contracts.weighting import working_dtype
from mtl_platform_plugins.weightings._solvers import nonneg_qp, psd_gram, symmetric, tiny, working_gram
from mtl_platform_plugins.weightings.upgrad import UPGrad

from solver_gramians import CASES, SIZES, bench_gram, count_factorisations

F64 = torch.float64


# -- the solver this one replaced, as it was (slow: a pseudo-inverse per step, 2m + 4 steps) ----------
def _reference_pinv_solve(a, rhs, rtol, refine=2):
    pinv = torch.linalg.pinv(a, rtol=rtol, hermitian=True)
    x = (pinv @ rhs.unsqueeze(-1)).squeeze(-1)
    for _ in range(refine):
        r = rhs - (a @ x.unsqueeze(-1)).squeeze(-1)
        x = x + (pinv @ r.unsqueeze(-1)).squeeze(-1)
    return x


def reference_nonneg_qp(q, c, iterations=None, tol=1e-12):
    dt = working_dtype(c)
    q = symmetric(q.to(dt))
    c = c.to(dt)
    m = q.shape[-1]
    steps = 2 * m + 4 if iterations is None else iterations
    diag = torch.diagonal(q).clamp_min(0)
    nonzero = diag > diag.amax() * 1e-30
    d = torch.where(nonzero, diag.clamp_min(tiny(diag)).rsqrt(), torch.zeros_like(diag))
    k = d.unsqueeze(-1) * q * d.unsqueeze(-2)
    b = c * d
    y = torch.zeros_like(b)
    passive = torch.zeros_like(b, dtype=torch.bool)
    settled = torch.ones(b.shape[:-1], dtype=torch.bool)
    thresh = tol * b.abs().amax(-1)
    eye = torch.eye(m, dtype=dt)
    inf = torch.full((), float("inf"), dtype=dt)
    for _ in range(steps):
        grad = y @ k + b
        pull = torch.where(passive | ~nonzero, inf, grad)
        j = pull.argmin(-1, keepdim=True)
        add = settled & (pull.gather(-1, j).squeeze(-1) < -thresh)
        passive = passive | (torch.zeros_like(passive).scatter(-1, j, True) & add.unsqueeze(-1))
        act = passive.to(dt)
        sys = act.unsqueeze(-1) * k * act.unsqueeze(-2) + eye * (1 - act).unsqueeze(-1)
        z = _reference_pinv_solve(sys, -b * act, 1e-13) * act
        blocked = passive & (z <= 0)
        full = ~blocked.any(-1)
        ratio = torch.where(blocked, y / (y - z).clamp_min(tiny(y)), inf)
        t = ratio.amin(-1, keepdim=True).clamp(0, 1)
        dropped = blocked & (ratio <= t)
        moved = torch.where(dropped, torch.zeros_like(y), (y + t * (z - y)).clamp_min(0))
        y = torch.where(full.unsqueeze(-1), z, moved)
        passive = torch.where(full.unsqueeze(-1), passive, passive & ~dropped)
        settled = full
    return y * d


def test_there_are_enough_cases():
    assert len(CASES) >= 200
    assert {g.shape[0] for _, g in CASES} == set(SIZES)


def kkt_violation(gram, lam):
    """The worst violation of the projection's KKT conditions, per problem i, relative to ‖g_i‖·max‖g_j‖.

    v = e_i + λ, λ ≥ 0; primal feasibility (Gv)_j ≥ 0; complementarity λ_j (Gv)_j = 0, with λ_j
    measured as λ_j‖g_j‖ (λ of a tiny gradient is huge, its (Gv)_j tiny).
    """
    m = gram.shape[0]
    norms = torch.diagonal(gram).clamp_min(0).sqrt()
    v = torch.eye(m, dtype=gram.dtype) + lam
    gv = v @ gram                                               # row i: (G v⁽ⁱ⁾)ᵀ
    unit = norms.amax().clamp_min(tiny(gram)) * norms.clamp_min(tiny(gram))[:, None]
    primal = (-gv).clamp_min(0) / unit
    comp = torch.minimum(lam * norms, gv.abs() / norms.clamp_min(tiny(gram))).abs() / norms.amax().clamp_min(tiny(gram))
    dual = (-lam).clamp_min(0)
    alive = norms > norms.amax() * 1e-15
    worst = torch.maximum(torch.maximum(primal, comp), dual)
    return torch.where(alive[:, None] & alive[None, :], worst, torch.zeros_like(worst)).amax()


@pytest.mark.parametrize("label,gram", CASES, ids=[label for label, _ in CASES])
def test_each_projection_meets_its_kkt_conditions(label, gram):
    g = psd_gram(working_gram(gram))                             # the problem UPGrad solves
    lam = nonneg_qp(g, g)
    assert torch.isfinite(lam).all() and (lam >= 0).all()
    assert kkt_violation(g, lam) <= 1e-10, (label, float(kkt_violation(g, lam)))


def weights_distance(gram, a, b):
    """‖(w_a − w_b)ᵀJ‖² / max‖g_j‖² for the UPGrad weights of multipliers a and b (the update is what counts:
    with a singular G the multipliers are not unique)."""
    m = gram.shape[0]
    eye = torch.eye(m, dtype=gram.dtype)
    diff = (eye + a).mean(0) - (eye + b).mean(0)
    return float(diff @ gram @ diff) / float(torch.diagonal(gram).amax().clamp_min(tiny(gram)))


def compare_with_reference(label, gram):
    g = psd_gram(working_gram(gram))
    new, old = nonneg_qp(g, g), reference_nonneg_qp(g, g)
    assert weights_distance(g, new, old) <= 1e-14, (label, weights_distance(g, new, old))


@pytest.mark.parametrize("label,gram", [c for c in CASES if c[1].shape[0] <= 13],
                         ids=[label for label, g in CASES if g.shape[0] <= 13])
def test_the_update_equals_the_previous_solvers(label, gram):
    compare_with_reference(label, gram)


@pytest.mark.slow
@pytest.mark.parametrize("label,gram", [c for c in CASES if c[1].shape[0] > 13],
                         ids=[label for label, g in CASES if g.shape[0] > 13])
def test_the_update_equals_the_previous_solvers_large_m(label, gram):
    compare_with_reference(label, gram)


# -- cost: matrix factorisations per call -------------------------------------------------------------
@pytest.fixture
def factorisations(monkeypatch):
    return count_factorisations(monkeypatch)


def test_a_call_at_m40_takes_a_handful_of_factorisations(factorisations):
    # the solver it replaced made one pseudo-inverse (an eigendecomposition) per step, 2m + 4 = 84
    m = 40
    gram = bench_gram(m)
    upgrad = UPGrad([f"t{i}" for i in range(m)])
    upgrad.respond(torch.ones(m, dtype=F64), gram=gram)
    assert factorisations["n"] <= 6, factorisations["n"]
    assert float(upgrad.residual) <= 1e-12


def test_non_conflicting_gradients_need_no_solve(factorisations):
    m = 40
    jac = torch.rand(m, 50, generator=torch.Generator().manual_seed(3), dtype=F64)   # all inner products > 0
    gram = jac @ jac.T
    lam = nonneg_qp(gram, gram)
    assert factorisations["n"] == 0
    assert (lam == 0).all()


def test_without_host_reads_the_full_budget_gives_the_same_answer():
    for label, gram in CASES[::9]:
        g = psd_gram(working_gram(gram))
        early, full = nonneg_qp(g, g), nonneg_qp(g, g, check_every=None)
        assert weights_distance(g, early, full) <= 1e-14, label
