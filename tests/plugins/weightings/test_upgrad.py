"""UPGrad (Quinton & Rey 2024): no conflict with any task, each projection onto the dual cone
(KKT conditions), a hand case and special cases."""
import pytest
import torch

from mtl_platform_plugins.weightings._solvers import nonneg_qp
from mtl_platform_plugins.weightings.upgrad import UPGrad

from solver_weighting_cases import F64, KINDS, family, identical, run, tasks


@pytest.mark.parametrize("kind", KINDS)
def test_upgrad_never_conflicts_with_a_task(kind):
    for m in range(2, 11):
        j = family(kind, m, p=40, seed=m)
        upgrad = UPGrad(tasks(m))
        w, d = run(upgrad, j)
        scale = float(j.norm(dim=1).max()) ** 2
        assert (j @ d >= -1e-10 * scale).all(), (kind, m, (j @ d).min())
        assert float(upgrad.residual) <= 1e-10


def test_upgrad_each_projection_is_the_projection_onto_the_dual_cone():
    for kind in ("random", "conflict", "opposite", "scaled"):
        j = family(kind, 6, seed=8)
        gram = j @ j.T
        lam = nonneg_qp(gram, gram)
        x = (torch.eye(6, dtype=F64) + lam) @ j                 # row i: π_J(g_i) = g_i + Jᵀλ⁽ⁱ⁾
        scale = float(gram.diagonal().max())
        assert (x @ j.T >= -1e-10 * scale).all()                # primal feasibility J x ≥ 0
        assert (lam >= 0).all()                                 # dual feasibility
        assert ((lam * (x @ j.T)).abs() <= 1e-10 * scale * (1 + lam.abs().max())).all()  # complementarity


def test_upgrad_hand_case_and_special_cases():
    # g1 = (1, 0), g2 = (−1, 1): π(g1) = (½, ½) = g1 + ½g2, π(g2) = (0, 1) = g1 + g2
    j = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=F64)
    w, d = run(UPGrad(tasks(2)), j)
    assert torch.allclose(w, torch.tensor([1.0, 0.75], dtype=F64))
    assert torch.allclose(d, torch.tensor([0.25, 0.75], dtype=F64))
    g, jj = identical(5)
    w, d = run(UPGrad(tasks(5)), jj)
    assert torch.allclose(w, torch.full((5,), 0.2, dtype=F64)) and torch.allclose(d, g)
    # non-conflicting gradients (all inner products ≥ 0): the plain mean
    for m in (2, 4, 8):
        jp = torch.rand(m, 30, generator=torch.Generator().manual_seed(m), dtype=F64)
        w, d = run(UPGrad(tasks(m)), jp)
        assert torch.equal(w, torch.full((m,), 1.0 / m, dtype=F64))
        assert torch.allclose(d, jp.mean(0))
