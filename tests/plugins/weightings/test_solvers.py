"""The torch solvers private to the built-in weightings (``_solvers.py``): the simplex projection
(Euclidean and diagonal metric, against hand cases, its KKT conditions and a bisection), the
min-norm point (Sener & Koltun's Algorithm 1, exhaustive support enumeration, a dense simplex
grid, Frank-Wolfe and the KKT gap), the non-negative QP (its KKT conditions, a hand case), the
Nash bargaining iteration; and where they live (beside the weightings, never in the core)."""
import math
from pathlib import Path

import pytest
import torch

from mtl_platform_plugins.weightings._solvers import (bargaining_residual, min_norm_frank_wolfe, min_norm_simplex,
                                                     min_norm_two, nash_bargaining, nonneg_qp, project_simplex,
                                                     simplex_kkt_gap)

from solver_weighting_cases import F64, KINDS, brute_min_norm, family


def simplex_grid(m, steps):
    """Every point of the simplex with coordinates in {0, 1/steps, …, 1} (m = 2 or 3)."""
    if m == 2:
        a = torch.arange(steps + 1, dtype=F64) / steps
        return torch.stack([a, 1 - a], 1)
    i, k = torch.meshgrid(torch.arange(steps + 1), torch.arange(steps + 1), indexing="ij")
    keep = (i + k) <= steps
    a, b = i[keep].to(F64) / steps, k[keep].to(F64) / steps
    return torch.stack([a, b, 1 - a - b], 1)


def test_project_simplex_hand_cases_and_variational_inequality():
    v = torch.tensor([[0.5, 0.5, 0.5], [2.0, 0.0, 0.0], [0.6, 0.5, -3.0], [-1.0, -1.0, -1.0]], dtype=F64)
    want = torch.tensor([[1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0], [0.55, 0.45, 0.0], [1 / 3, 1 / 3, 1 / 3]],
                        dtype=F64)
    assert torch.allclose(project_simplex(v), want, atol=1e-12)
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(200, 7, generator=gen, dtype=F64) * 3
    x = project_simplex(v)
    assert (x >= 0).all() and torch.allclose(x.sum(-1), torch.ones(200, dtype=F64))
    # x is the projection iff (v − x)·(y − x) ≤ 0 for every y of the simplex (its vertices suffice)
    for vertex in torch.eye(7, dtype=F64):
        assert (((v - x) * (vertex - x)).sum(-1) <= 1e-12).all()


def test_project_simplex_in_a_diagonal_metric_satisfies_its_kkt_conditions():
    gen = torch.Generator().manual_seed(0)
    for m in range(1, 9):
        y = 3 * torch.randn(5, m, generator=gen, dtype=F64)
        metric = torch.rand(m, generator=gen, dtype=F64) + 0.1
        for d in (None, metric):
            x = project_simplex(y, d)
            dd = torch.ones(m, dtype=F64) if d is None else d
            assert torch.allclose(x.sum(1), torch.ones(5, dtype=F64)) and (x >= 0).all()
            nu = dd * (y - x)  # = ν on the support, ≤ ν off it
            for row in range(5):
                support = x[row] > 0
                level = nu[row][support][0]
                assert torch.allclose(nu[row][support], level.expand(int(support.sum())))
                assert (nu[row][~support] <= level + 1e-12).all()


def simplex_by_bisection(y, d):
    """The projection in the metric d, by bisection on ν (Σ_i max(0, y_i − ν/d_i) = 1), in float64."""
    y, d = y.double(), d.double()
    lo = ((y - 1) * d).amin(-1, keepdim=True)                   # Σ ≥ 1 here
    hi = (y * d).amax(-1, keepdim=True)                         # Σ = 0 here
    for _ in range(400):
        mid = (lo + hi) / 2
        above = (y - mid / d).clamp_min(0).sum(-1, keepdim=True) > 1
        lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
    return (y - (lo + hi) / 2 / d).clamp_min(0)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_project_simplex_matches_bisection_batched_at_every_scale(dtype):
    """One projection serves the solvers (Euclidean) and CAGrad (diagonal metric): batched over
    leading dimensions, equal to an independent bisection up to the rounding of its input."""
    gen = torch.Generator().manual_seed(1)
    for scale in (1e-6, 1.0, 1e6):
        for m in (1, 2, 5, 40):
            y = (scale * torch.randn(3, 4, m, generator=gen, dtype=F64)).to(dtype)
            metric = (torch.rand(m, generator=gen, dtype=F64) * 10 + 0.1).to(dtype)
            for d in (None, metric):
                x = project_simplex(y, d)
                assert x.shape == y.shape and x.dtype == dtype
                want = simplex_by_bisection(y, torch.ones(m, dtype=dtype) if d is None else d)
                # x = max(0, y − ν/d): its error is that of y − ν/d, a few ulps of max |y| + 1
                allowed = 8 * m * torch.finfo(dtype).eps * (y.double().abs().amax(-1, keepdim=True) + 1)
                assert ((x.double() - want).abs() <= allowed).all(), (scale, m, d is None)
                rows, flat = y.reshape(-1, m), x.reshape(-1, m)  # each batch entry is its own problem
                for i in range(rows.shape[0]):
                    assert torch.equal(project_simplex(rows[i:i + 1], d)[0], flat[i])


def test_min_norm_two_matches_sener_koltun_algorithm_1():
    # a ⊥ b, equal norms: the midpoint
    assert torch.allclose(min_norm_two(torch.tensor(1.0), torch.tensor(0.0), torch.tensor(1.0)), torch.tensor(0.5))
    # a = 2b: b is the closest point (γ = 0); b = 2a: a (γ = 1)
    assert min_norm_two(torch.tensor(4.0), torch.tensor(2.0), torch.tensor(1.0)) == 0
    assert min_norm_two(torch.tensor(1.0), torch.tensor(2.0), torch.tensor(4.0)) == 1
    # a = (1, 0), b = (0, 2): γ = 4/5
    assert torch.allclose(min_norm_two(torch.tensor(1.0), torch.tensor(0.0), torch.tensor(4.0)), torch.tensor(0.8))
    # a = b: every γ is optimal, ½ by convention
    assert min_norm_two(torch.tensor(2.0), torch.tensor(2.0), torch.tensor(2.0)) == 0.5


@pytest.mark.parametrize("kind", KINDS)
def test_min_norm_simplex_equals_support_enumeration(kind):
    for m in (2, 3, 4, 6):
        for seed in range(2):
            j = family(kind, m, seed=seed)
            gram = j @ j.T
            w = min_norm_simplex(gram)
            ref = brute_min_norm(gram)
            scale = j.norm(dim=1).max()
            assert (w >= 0).all() and abs(float(w.sum()) - 1) < 1e-12
            assert (w @ j - ref @ j).norm() <= 1e-7 * scale, (kind, m, seed)


@pytest.mark.parametrize("m", [2, 3])
def test_min_norm_simplex_beats_a_dense_simplex_grid(m):
    grid = simplex_grid(m, 2000 if m == 2 else 300)
    for kind in ("random", "conflict", "scaled"):
        j = family(kind, m, seed=5)
        gram = j @ j.T
        w = min_norm_simplex(gram)
        f = float(w @ gram @ w)
        values = ((grid @ gram) * grid).sum(1)
        best = int(values.argmin())
        f_grid = float(values[best])
        assert f <= f_grid + 1e-12 * float(gram.diagonal().max())
        # at the optimum d*, ‖d − d*‖² ≤ ‖d‖² − ‖d*‖² for every d of the hull
        assert float((grid[best] @ j - w @ j).norm()) <= math.sqrt(max(f_grid - f, 0)) + 1e-9


def test_min_norm_solvers_batch_frank_wolfe_and_kkt():
    grams = torch.stack([(lambda j: j @ j.T)(family("random", 5, seed=s)) for s in range(4)])
    batched = min_norm_simplex(grams)
    single = torch.stack([min_norm_simplex(g) for g in grams])
    assert torch.allclose(batched, single, atol=1e-12)
    assert (simplex_kkt_gap(grams, batched) <= 1e-10 * grams.diagonal(dim1=1, dim2=2).amax(1)).all()
    fw = min_norm_frank_wolfe(grams, iterations=500)
    assert torch.allclose(fw, batched, atol=1e-6)
    assert min_norm_simplex(torch.eye(1, dtype=F64) * 3).tolist() == [1.0]


@pytest.mark.parametrize("kind", KINDS)
def test_nonneg_qp_satisfies_its_kkt_conditions(kind):
    for m in (2, 5, 9):
        j = family(kind, m, seed=1)
        q = j @ j.T
        c = torch.cat([q, -torch.rand(3, m, generator=torch.Generator().manual_seed(m), dtype=F64) @ q])
        x = nonneg_qp(q, c)
        grad = x @ q + c
        scale = float(q.diagonal().max()) * (1 + float(x.abs().max()))
        assert (x >= 0).all()
        assert (grad >= -1e-9 * scale).all(), (kind, m, grad.min())
        assert ((x * grad).abs() <= 1e-9 * scale).all()


def test_nonneg_qp_hand_case():
    # min ½(x1² + x2²) − x1 + x2 over x ≥ 0: x = (1, 0)
    x = nonneg_qp(torch.eye(2, dtype=F64), torch.tensor([[-1.0, 1.0]], dtype=F64))
    assert torch.allclose(x, torch.tensor([[1.0, 0.0]], dtype=F64))


def test_nash_bargaining_converges_and_is_affine_invariant():
    j = family("random", 6, seed=2)
    gram = j @ j.T
    alpha = nash_bargaining(gram, gram.diagonal().rsqrt(), 30)
    assert bargaining_residual(gram, alpha) < 1e-12
    assert (alpha > 0).all()
    # ‖d‖² = αᵀGα = Σ α_i (Gα)_i = m at the solution
    assert abs(float(alpha @ gram @ alpha) - 6) < 1e-10


def test_the_solver_maths_lives_beside_the_weightings_and_the_core_never_imports_it():
    """The solvers are private to the built-in weightings (issue 16 point 5): no module under
    ``mtl_platform/`` holds or imports them, and the core imports no plugin."""
    root = Path(__file__).resolve().parents[3]
    assert not (root / "mtl_platform" / "gradients" / "solvers.py").exists()
    for path in (root / "mtl_platform").rglob("*.py"):
        source = path.read_text()
        for banned in ("solvers", "_projection", "mtl_platform_plugins"):
            assert f"import {banned}" not in source and not any(
                line.lstrip().startswith("from ") and banned in line.split(" import ")[0]
                for line in source.splitlines()), f"{path.relative_to(root)} imports {banned}"


def test_solvers_read_the_host_only_where_the_tensors_live_there():
    """Early stopping reads a flag on the host; on an accelerator that would synchronise the
    device every few steps, so there the solvers run their whole budget without a read."""
    from mtl_platform_plugins.weightings._solvers import host_checks

    assert host_checks(torch.zeros(2), "auto") == 4
    assert host_checks(torch.empty(2, device="meta"), "auto") is None
    assert host_checks(torch.empty(2, device="meta"), 3) == 3
    assert host_checks(torch.zeros(2), None) is None
