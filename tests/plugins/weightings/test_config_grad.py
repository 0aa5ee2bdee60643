"""ConFIG (Liu et al. 2024, Eq. 2): hand cases worked from the paper's definition, equal
cosines with every task gradient, and the degenerate cases the docstring names."""
import math

import torch

from mtl_platform_plugins.weightings.config_grad import ConFIG

from solver_weighting_cases import F64, family, identical, run, tasks


def test_config_hand_cases():
    # orthogonal g1 = (2, 0), g2 = (0, 1): unit rows e1, e2, Û⁺1 = (1, 1), ĝ_u = (1, 1)/√2,
    # Σ g_iᵀĝ_u = 3/√2, g_c = (3/2, 3/2) = ¾ g1 + 3/2 g2
    w, d = run(ConFIG(tasks(2)), torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=F64))
    assert torch.allclose(w, torch.tensor([0.75, 1.5], dtype=F64), atol=1e-12)
    assert torch.allclose(d, torch.tensor([1.5, 1.5], dtype=F64), atol=1e-12)
    # conflicting g1 = (1, 0), g2 = (−1, 1): Ûx = 1 gives x = (1, 1 + √2), ‖x‖² = 4 + 2√2,
    # Σ g_iᵀx = 1 + √2, so g_c = (1 + √2)/(4 + 2√2) · x = x/(2√2)
    w, d = run(ConFIG(tasks(2)), torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=F64))
    r2 = math.sqrt(2)
    assert torch.allclose(d, torch.tensor([1 / (2 * r2), (1 + r2) / (2 * r2)], dtype=F64), atol=1e-12)


def test_config_has_equal_positive_cosines_with_independent_gradients():
    for kind in ("random", "conflict", "scaled"):
        for m in (2, 5, 9):
            j = family(kind, m, seed=2)
            _, d = run(ConFIG(tasks(m)), j)
            cos = (j @ d) / (j.norm(dim=1) * d.norm())
            assert (cos > 0).all() and torch.allclose(cos, cos.mean().expand(m), rtol=1e-9), (kind, m)
            # the length is the sum of the projections: Σ g_iᵀ d/‖d‖ = ‖d‖
            assert torch.allclose((j @ d).sum() / d.norm(), d.norm(), rtol=1e-9)


def test_config_degenerate_cases():
    g, jj = identical(4)
    _, d = run(ConFIG(tasks(4)), jj)
    assert torch.allclose(d, 4 * g)                                  # identical: m·g
    base = torch.randn(10, generator=torch.Generator().manual_seed(1), dtype=F64)
    w, d = run(ConFIG(tasks(2)), torch.stack([base, -base]))
    assert torch.equal(d, torch.zeros_like(d))                      # exactly opposite: no update
    j = family("random", 3, seed=5)
    j[1] = 0
    w, d = run(ConFIG(tasks(3)), j)
    w2, d2 = run(ConFIG(tasks(2)), j[[0, 2]])
    assert w[1] == 0 and torch.allclose(d, d2, rtol=1e-12)          # a zero gradient: no direction
