"""CAGrad (Liu et al. 2021): c = 0 is the mean gradient, a hand case with the rescale options,
identical gradients, the dual against dense simplex sampling, the primal against dense sampling
of the ball, the duality gap over random families, permutation equivariance."""
import math

import pytest
import torch

from mtl_platform_plugins.weightings.cagrad import CAGrad, dual_objective

from seed_weighting_cases import D, FAMILIES, names, run, t

pytestmark = pytest.mark.usefixtures("one_thread")


def test_cagrad_with_c_zero_is_the_mean_gradient():
    for fam, j in FAMILIES[::9]:
        m = j.shape[0]
        for rescale in (0, 1, 2):
            w, g = run(CAGrad(names(m), c=0.0, rescale=rescale), j)
            assert torch.allclose(w, torch.full((m,), 1.0 / m, dtype=D), atol=1e-15), fam
            assert torch.allclose(g, j.mean(0)), fam


def test_cagrad_hand_case_and_rescale_options():
    j = t([1.0, 0.0], [0.0, 1.0])  # g₀ = (½, ½); w = (½, ½) by symmetry, λ = c: d = 1.4 g₀
    w0, g0 = run(CAGrad(["a", "b"], c=0.4, rescale=0), j)
    assert torch.allclose(w0, t(0.7, 0.7), atol=1e-9)
    assert torch.allclose(run(CAGrad(["a", "b"], c=0.4, rescale=1), j)[0], w0 / 1.16, atol=1e-12)
    assert torch.allclose(run(CAGrad(["a", "b"], c=0.4, rescale=2), j)[0], w0 / 1.4, atol=1e-12)


def test_cagrad_identical_gradients():
    common = torch.randn(1, 30, dtype=D).repeat(5, 1)
    c = 0.4
    for rescale, factor in ((0, 1 + c), (1, (1 + c) / (1 + c * c)), (2, 1.0)):
        w, g = run(CAGrad(names(5), c=c, rescale=rescale), common)
        # every w on the simplex is optimal, λ = c: d = (1 + c) g before rescaling
        assert torch.allclose(w, torch.full((5,), factor / 5, dtype=D), atol=1e-9)
        assert torch.allclose(g, factor * common[0], atol=1e-9)


def simplex_grid(m, n):
    """All points of the simplex with coordinates in {0, 1/n, …, 1}."""
    if m == 1:
        return torch.ones(1, 1, dtype=D)
    out = []
    for a in range(n + 1):
        rest = simplex_grid(m - 1, n - a) * (n - a) / max(n, 1) if n - a > 0 else torch.zeros(1, m - 1, dtype=D)
        out.append(torch.cat([torch.full((rest.shape[0], 1), a / n, dtype=D), rest], 1))
    return torch.cat(out)


@pytest.mark.parametrize("m,n", [(2, 20000), (3, 300), (4, 60)])
def test_cagrad_dual_is_optimal_against_dense_simplex_sampling(m, n):
    grid = simplex_grid(m, n)
    assert torch.allclose(grid.sum(1), torch.ones(len(grid), dtype=D))
    gen = torch.Generator().manual_seed(m)
    for trial in range(6):
        j = torch.randn(m, 20, generator=gen, dtype=D) * 10.0 ** (torch.rand(m, 1, generator=gen, dtype=D) - 0.5)
        if trial % 2:
            j[1] -= 1.2 * j[0]  # a conflict
        gram = j @ j.T
        cg = CAGrad(names(m), c=0.4, rescale=0)
        w, d = run(cg, j)
        g0 = j.mean(0)
        radius = 0.4 * g0.norm()
        best = dual_objective(grid, gram, radius).min()
        # recover the solver's simplex point: d = g₀ + λ g_w, so w − 1/m ∝ the dual weights
        dual_w = (w - 1.0 / m) / (w - 1.0 / m).sum()
        mine = dual_objective(dual_w, gram, radius)
        assert float(mine) <= float(best) + 1e-9 * float(gram.diagonal().mean()), (m, trial)
        # strong duality: the primal value min_i g_iᵀd equals the dual optimum, and d is feasible
        assert abs(float((j @ d).min() - mine)) < 1e-6 * float(gram.diagonal().mean()), (m, trial)
        assert float((d - g0).norm()) <= float(radius) * (1 + 1e-9), (m, trial)


def test_cagrad_primal_against_dense_sampling_of_the_ball():
    gen = torch.Generator().manual_seed(3)
    angles = torch.linspace(0, 2 * math.pi, 200001, dtype=D)[:-1]
    circle = torch.stack([angles.cos(), angles.sin()], 1)
    for trial in range(6):
        j = torch.randn(3, 2, generator=gen, dtype=D)  # P = 2: the ball is a disc, sample its boundary
        _, d = run(CAGrad(names(3), c=0.4, rescale=0), j)
        g0 = j.mean(0)
        candidates = torch.cat([g0 + 0.4 * g0.norm() * circle, g0[None]])
        best = (candidates @ j.T).min(1).values.max()
        assert float((j @ d).min()) >= float(best) - 1e-9, trial


def test_cagrad_duality_gap_is_small_over_random_families():
    for fam, j in FAMILIES:
        cg = CAGrad(names(j.shape[0]), rescale=0)
        run(cg, j)
        # measured worst case with the default 50 iterations: 3e-6 (near-duplicate gradients converge slowly)
        assert -1e-12 <= float(cg.duality_gap) < 1e-5, (fam, float(cg.duality_gap))


def test_cagrad_is_permutation_equivariant():
    for fam, j in FAMILIES[::5]:
        m = j.shape[0]
        perm = torch.randperm(m, generator=torch.Generator().manual_seed(m))
        _, g = run(CAGrad(names(m)), j)
        _, g_perm = run(CAGrad(names(m)), j[perm])
        assert torch.allclose(g_perm, g, rtol=1e-4, atol=1e-4 * float(g.norm())), fam
