"""Aligned-MTL (Senushkin et al. 2023): aligned directions orthonormal up to σ_min (and the
median and RMSE scales), the default as the sum of aligned directions, a hand case,
rank-deficient Jacobians."""
import pytest
import torch

from mtl_platform.errors import UserError
from mtl_platform_plugins.weightings.aligned_mtl import AlignedMTL, alignment_matrix

from solver_weighting_cases import F64, family, identical, run, tasks


def aligned_rows(j, **params):
    """The aligned task directions ĝ_t = Jᵀ(B e_t), read through the weights with one-hot preferences."""
    m = j.shape[0]
    rows = [run(AlignedMTL(tasks(m), preferences=list(e.tolist()), **params), j)[1] for e in torch.eye(m)]
    return torch.stack(rows)


def test_aligned_directions_are_orthonormal_up_to_sigma_min():
    for kind in ("random", "scaled", "conflict", "parallel"):
        for m in (2, 3, 5, 8):
            j = family(kind, m, p=40, seed=m)
            lam = torch.linalg.eigvalsh(j @ j.T)
            aligned = aligned_rows(j)
            gram = aligned @ aligned.T
            assert torch.allclose(gram, lam.min() * torch.eye(m, dtype=F64), rtol=1e-6,
                                  atol=1e-6 * float(lam.min())), (kind, m)
            assert torch.linalg.cond(gram) < 1 + 1e-6
    j = family("random", 5, seed=1)
    lam = torch.linalg.eigvalsh(j @ j.T)
    for scale, sigma2 in [("median", lam.median()), ("rmse", lam.mean())]:
        aligned = aligned_rows(j, scale=scale)
        assert torch.allclose(aligned @ aligned.T, sigma2 * torch.eye(5, dtype=F64), rtol=1e-8)


def test_aligned_default_is_the_sum_of_aligned_directions_and_hand_case():
    j = family("conflict", 4, seed=2)
    w, d = run(AlignedMTL(tasks(4)), j)
    assert torch.allclose(d, aligned_rows(j).sum(0))
    assert torch.allclose(w, alignment_matrix(j @ j.T).sum(1))
    # orthogonal g1 = (2, 0), g2 = (0, 1): σ_min = 1, B = diag(½, 1), d = (1, 1)
    w, d = run(AlignedMTL(tasks(2)), torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=F64))
    assert torch.allclose(w, torch.tensor([0.5, 1.0], dtype=F64))
    assert torch.allclose(d, torch.tensor([1.0, 1.0], dtype=F64))
    with pytest.raises(UserError, match="preferences"):
        AlignedMTL(tasks(3), preferences=[1.0, 2.0])


def test_aligned_rank_deficient_cases():
    g, jj = identical(4)
    w, d = run(AlignedMTL(tasks(4)), jj)                           # rank 1: w = 1, d = m g
    assert torch.allclose(w, torch.ones(4, dtype=F64)) and torch.allclose(d, 4 * g)
    j = family("lowrank", 5, seed=3)                               # rank 2: σ² on the span, 0 off it
    aligned = aligned_rows(j)
    ev = torch.linalg.eigvalsh(aligned @ aligned.T)
    lam = torch.linalg.eigvalsh(j @ j.T)
    kept = lam[lam > 5 * torch.finfo(F64).eps * lam.max()]
    assert len(kept) == 2
    assert torch.allclose(ev[-2:], kept.min().expand(2), rtol=1e-6)
    assert (ev[:-2].abs() < 1e-8 * kept.min()).all()
    w, d = run(AlignedMTL(tasks(3)), torch.zeros(3, 10, dtype=F64))  # all zero: no NaN
    assert torch.isfinite(w).all() and (d == 0).all()
