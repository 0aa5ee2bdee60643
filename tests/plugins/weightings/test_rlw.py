"""RLW (Lin et al., TMLR 2022): weights that sum to m with mean one under each distribution, the
distributions' shapes, the sum normalisation and the empty Bernoulli draw, reproducibility from
the global seed."""
import math

import pytest
import torch

from mtl_platform.errors import UserError
from mtl_platform_plugins.weightings.rlw import RLW

from staple_weighting_cases import D, tasks


@pytest.mark.parametrize("distribution", ["normal", "uniform", "dirichlet", "bernoulli"])
def test_rlw_weights_sum_to_m_with_mean_one(distribution):
    torch.manual_seed(0)
    m, n = 3, 20000
    rlw = RLW(tasks(m), distribution=distribution)
    draws = torch.stack([rlw.weights(torch.ones(m)) for _ in range(n)])
    assert torch.allclose(draws.sum(1), torch.full((n,), float(m)), atol=1e-5)
    assert (draws > 0).all()                                      # softmax / Dirichlet: positive
    assert torch.allclose(draws.mean(0), torch.ones(m), atol=0.03)   # E[w_t] = 1 by symmetry
    assert draws.std(0).min() > 0.01                              # genuinely random


def test_rlw_distributions_have_their_shapes():
    torch.manual_seed(0)
    n = 40000
    # normal, m = 2: w₁ = 2·sigmoid(z₁ − z₂), z₁ − z₂ ~ N(0, 2): P(w₁ > 1.5) = P(N(0,2) > ln 3)
    normal = RLW(tasks(2))
    w = torch.stack([normal.weights(torch.ones(2)) for _ in range(n)])
    expected = 0.5 * math.erfc(math.log(3) / 2)   # 1 − Φ(ln 3 / √2)
    assert abs((w[:, 0] > 1.5).double().mean().item() - expected) < 0.01
    # uniform (softmax of U(0,1)): w₁ ≤ 2e/(e+1) < 1.5 always
    uniform = RLW(tasks(2), distribution="uniform")
    w = torch.stack([uniform.weights(torch.ones(2)) for _ in range(2000)])
    assert w.max() <= 2 * math.e / (math.e + 1) + 1e-6
    # Dirichlet(1,1,1): λ_t ~ Beta(1, 2), E[λ²] = 1/6, so E[w²] = 9/6
    dirichlet = RLW(tasks(3), distribution="dirichlet")
    w = torch.stack([dirichlet.weights(torch.ones(3)) for _ in range(n)])
    assert abs((w ** 2).mean().item() - 1.5) < 0.03
    # bernoulli + softmax: a selected task gets e/(k·e + m − k)
    bern = RLW(tasks(2), distribution="bernoulli")
    w = torch.stack([bern.weights(torch.ones(2)) for _ in range(2000)])
    allowed = torch.tensor([[1.0, 1.0], [2 * math.e / (math.e + 1), 2 / (math.e + 1)],
                            [2 / (math.e + 1), 2 * math.e / (math.e + 1)]])
    assert torch.cdist(w, allowed).min(1).values.max() < 1e-5


def test_rlw_sum_normalisation_and_the_empty_bernoulli_draw():
    torch.manual_seed(0)
    rlw = RLW(tasks(2), distribution="bernoulli", normalise="sum")
    w = torch.stack([rlw.weights(torch.ones(2)) for _ in range(4000)])
    # draws {1,0}→[2,0], {0,1}→[0,2], {1,1} and the empty draw {0,0}→[1,1] (documented)
    is_equal = (w == 1).all(1)
    assert ((w == torch.tensor([2.0, 0.0])).all(1) | (w == torch.tensor([0.0, 2.0])).all(1) | is_equal).all()
    assert abs(is_equal.double().mean().item() - 0.5) < 0.03
    u = RLW(tasks(4), distribution="uniform", normalise="sum")   # CoNAL retraining: u/Σu (× m)
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    assert torch.allclose(u.weights(torch.ones(4)), 4 * expected / expected.sum())
    with pytest.raises(UserError, match="non-negative"):
        RLW(tasks(2), distribution="normal", normalise="sum")


def test_rlw_is_reproducible_from_the_global_seed():
    rlw = RLW(tasks(5))
    torch.manual_seed(7)
    a = torch.stack([rlw.weights(torch.ones(5, dtype=D)) for _ in range(5)])
    torch.manual_seed(7)
    b = torch.stack([rlw.weights(torch.ones(5, dtype=D)) for _ in range(5)])
    assert torch.equal(a, b) and a.dtype == D
    assert not torch.allclose(a[0], a[1])
