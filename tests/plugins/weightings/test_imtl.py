"""IMTL-G (Liu et al. 2021, §3.2): equal projections and the paper's closed form from the
explicit Jacobian, a hand case and degenerate cases."""
import torch

from mtl_platform_plugins.weightings.imtl import IMTL

from solver_weighting_cases import F64, family, identical, run, tasks


def paper_imtl(j):
    """Liu et al. §3.2: α_{2:m} = g_1 Uᵀ (D Uᵀ)⁻¹, α_1 = 1 − Σ α_{2:m}, from the explicit J."""
    u = j / j.norm(dim=1, keepdim=True)
    d = j[0] - j[1:]
    uu = u[0] - u[1:]
    rest = torch.linalg.solve((d @ uu.T).T, (j[0] @ uu.T))
    return torch.cat([1 - rest.sum()[None], rest])


def test_imtl_equal_projections_and_the_papers_closed_form():
    for kind in ("random", "scaled", "conflict"):
        for m in range(2, 11):
            j = family(kind, m, p=40, seed=m)
            w, d = run(IMTL(tasks(m)), j)
            proj = d @ (j / j.norm(dim=1, keepdim=True)).T
            assert torch.allclose(proj, proj.mean().expand(m), rtol=1e-8, atol=1e-10 * float(d.norm())), (kind, m)
            assert abs(float(w.sum()) - 1) < 1e-10
            assert torch.allclose(w, paper_imtl(j), rtol=1e-6, atol=1e-9), (kind, m)


def test_imtl_hand_case_and_degenerate_cases():
    # g1 = (2, 0), g2 = (0, 1): d = (2α1, α2), 2α1 = α2, α1 + α2 = 1
    w, d = run(IMTL(tasks(2)), torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=F64))
    assert torch.allclose(w, torch.tensor([1 / 3, 2 / 3], dtype=F64))
    assert torch.allclose(d, torch.tensor([2 / 3, 2 / 3], dtype=F64))
    g, jj = identical(4)
    w, d = run(IMTL(tasks(4)), jj)                                 # identical: 1/m each, d = g
    assert torch.allclose(w, torch.full((4,), 0.25, dtype=F64)) and torch.allclose(d, g)
    u = g / g.norm()
    c = torch.tensor([1.0, 2.0, 4.0], dtype=F64)
    w, d = run(IMTL(tasks(3)), c[:, None] * u)                      # same direction: α ∝ 1/c
    assert torch.allclose(w, (1 / c) / (1 / c).sum())
    assert torch.allclose(d, 3 / (1 / c).sum() * u)                 # harmonic mean of the norms
    j = family("random", 3, seed=1)
    j[1] = 0
    w, d = run(IMTL(tasks(3)), j)                                   # a zero gradient is ignored
    assert w[1] == 0
    u0, u2 = j[0] / j[0].norm(), j[2] / j[2].norm()
    assert torch.allclose(d @ u0, d @ u2)
