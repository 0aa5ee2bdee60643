"""DualProj (Quinton & Rey 2024; GEM's projection): a hand case, the non-conflicting case, and
the projection's optimality conditions."""
import torch

from mtl_platform_plugins.weightings.dualproj import DualProj

from solver_weighting_cases import F64, family, identical, run, tasks


def test_dualproj_hand_case():
    # g1 = (1, 0), g2 = (−2, 1): the mean (−½, ½) conflicts with g1 (inner product −½); its
    # projection onto {y : y₁ ≥ 0, −2y₁ + y₂ ≥ 0} is (0, ½) = 1·g1 + ½·g2, so v = (1, ½) ≥ u = (½, ½)
    j = torch.tensor([[1.0, 0.0], [-2.0, 1.0]], dtype=F64)
    w, d = run(DualProj(tasks(2)), j)
    assert torch.allclose(w, torch.tensor([1.0, 0.5], dtype=F64), atol=1e-12)
    assert torch.allclose(d, torch.tensor([0.0, 0.5], dtype=F64), atol=1e-12)


def test_dualproj_is_the_mean_without_conflict_and_identical_gradients_give_g():
    for m in (2, 4, 8):
        jp = torch.rand(m, 30, generator=torch.Generator().manual_seed(m), dtype=F64)
        w, d = run(DualProj(tasks(m)), jp)
        assert torch.equal(w, torch.full((m,), 1.0 / m, dtype=F64))
    g, jj = identical(5)
    _, d = run(DualProj(tasks(5)), jj)
    assert torch.allclose(d, g)


def test_dualproj_is_the_projection_of_the_mean():
    """KKT of min ‖y − ḡ‖² s.t. Jy ≥ 0: y = ḡ + Jᵀλ with λ = v − u ≥ 0, Jy ≥ 0, λ ⊙ Jy = 0."""
    for kind in ("random", "conflict", "opposite", "scaled", "lowrank"):
        for m in (3, 6, 9):
            j = family(kind, m, seed=4)
            w, d = run(DualProj(tasks(m)), j)
            lam = w - 1.0 / m
            gd = j @ d
            scale = float((j @ j.T).diagonal().max())
            assert (lam >= -1e-12).all(), (kind, m)
            assert (gd >= -1e-10 * scale).all(), (kind, m)
            assert (lam * gd).abs().max() <= 1e-9 * scale * (1 + float(lam.abs().max())), (kind, m)
