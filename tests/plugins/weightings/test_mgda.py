"""MGDA (Sener & Koltun 2018): the min-norm point of the convex hull against support enumeration,
its KKT condition, the two-task closed form (Algorithm 1) and special cases, the gradient
normalisations, the Frank-Wolfe solver, and MGDA-UB solving on the representation through the
engine."""
import pytest
import torch

from mtl_platform.errors import UserError
from mtl_platform.gradients import GradientEngine
from mtl_platform_plugins.weightings.mgda import MGDA

from solver_weighting_cases import F64, KINDS, TinyNet, brute_min_norm, family, identical, run, tasks


def test_mgda_is_the_min_norm_point_of_the_hull():
    for kind in KINDS:
        for m in (2, 3, 5):
            j = family(kind, m, seed=11)
            w, d = run(MGDA(tasks(m)), j)
            ref = brute_min_norm(j @ j.T) @ j
            assert (d - ref).norm() <= 1e-7 * j.norm(dim=1).max(), (kind, m)
            assert torch.allclose(w.sum(), torch.tensor(1.0, dtype=F64))


def test_mgda_kkt_every_gradient_is_improved_by_at_least_the_norm():
    for kind in KINDS:
        for m in range(2, 11):
            j = family(kind, m, p=40, seed=m)
            w, d = run(MGDA(tasks(m)), j)
            tol = 1e-9 * float((j * j).sum(1).max())
            assert (w >= 0).all()
            assert (j @ d >= d @ d - tol).all(), (kind, m)


def test_mgda_two_tasks_closed_form_and_special_cases():
    j = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=F64)
    w, d = run(MGDA(tasks(2)), j)
    assert torch.allclose(w, torch.tensor([0.8, 0.2], dtype=F64))   # γ = 4/5 (Algorithm 1)
    assert torch.allclose(d, torch.tensor([0.8, 0.4], dtype=F64))
    w, d = run(MGDA(["only"]), torch.tensor([[3.0, -1.0]], dtype=F64))
    assert w.tolist() == [1.0] and d.tolist() == [3.0, -1.0]
    g, jj = identical(4)
    w, d = run(MGDA(tasks(4)), jj)
    assert torch.allclose(w, torch.full((4,), 0.25, dtype=F64)) and torch.allclose(d, g)
    # 0 in the hull: d = 0
    w, d = run(MGDA(tasks(2)), torch.tensor([[1.0, 1.0], [-2.0, -2.0]], dtype=F64))
    assert torch.allclose(w, torch.tensor([2 / 3, 1 / 3], dtype=F64)) and d.norm() < 1e-12


def test_mgda_normalizations():
    j = family("scaled", 4, seed=2)
    losses = torch.tensor([0.5, 2.0, 1.0, 4.0], dtype=F64)
    norms = j.norm(dim=1)
    for normalization, n in [("l2", norms), ("loss", losses), ("loss+", losses * norms)]:
        w, d = run(MGDA(tasks(4), normalization=normalization), j, losses)
        ref = brute_min_norm((j / n[:, None]) @ (j / n[:, None]).T)
        assert torch.allclose(w * n, ref, atol=1e-8), normalization       # simplex weights on g_t/n_t
        assert (d - ref @ (j / n[:, None])).norm() < 1e-8 * (j / n[:, None]).norm(dim=1).max()
        raw, _ = run(MGDA(tasks(4), normalization=normalization, weights_on="raw"), j, losses)
        assert torch.allclose(raw, ref, atol=1e-8)                       # Sener & Koltun's code
    with pytest.raises(UserError):
        MGDA.params[0].coerce("l1", "mgda.normalization")


def test_mgda_frank_wolfe_solver_and_ub_mode():
    j = family("random", 5, seed=9)
    exact, _ = run(MGDA(tasks(5)), j)
    fw, _ = run(MGDA(tasks(5), solver="frank_wolfe", iterations=1000), j)
    assert torch.allclose(fw, exact, atol=1e-6)
    assert MGDA(tasks(2)).mode is None
    assert MGDA(tasks(2), ub=True).mode == "rep"
    mgda = MGDA(tasks(5))
    run(mgda, j)
    assert float(mgda.solver_gap) < 1e-12


def test_mgda_ub_solves_on_the_representation_through_the_engine():
    m = 3
    model = TinyNet(m)
    x = torch.randn(8, 4, dtype=F64, generator=torch.Generator().manual_seed(2))
    outs = model(x)
    losses = {t: (o ** 2).mean() for t, o in zip(tasks(m), outs)}
    z = model.rep
    jz = torch.stack([torch.autograd.grad(losses[t], z, retain_graph=True)[0].flatten() for t in tasks(m)])
    w = MGDA(tasks(m)).weights(torch.ones(m, dtype=F64), gram=jz @ jz.T)
    shared = model.shared_parameters()
    expected = torch.autograd.grad(sum(w[i] * losses[t] for i, t in enumerate(tasks(m))), shared, retain_graph=True)
    GradientEngine(model, MGDA(tasks(m), ub=True), tasks(m), mode="param").backward(losses)
    for p, e in zip(shared, expected):
        assert torch.allclose(p.grad, e, atol=1e-10)
