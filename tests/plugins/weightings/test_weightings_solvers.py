"""Solver-based weightings (MGDA, Nash-MTL, UPGrad, IMTL-G, Aligned-MTL) and their torch solvers.

References are independent of the code under test: exhaustive support enumeration and dense
grids for the min-norm problem, KKT certificates for the QPs, the papers' closed forms
computed from the explicit Jacobian, and hand-computed two-task cases.
"""
import itertools
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from mtl_platform import registry
from mtl_platform.errors import UserError
from mtl_platform.gradients import GradientEngine
from mtl_platform.gradients.combine import call_weighting
from mtl_platform_plugins.weightings._solvers import (bargaining_residual, min_norm_frank_wolfe, min_norm_simplex,
                                                     min_norm_two, nash_bargaining, nonneg_qp, project_simplex,
                                                     simplex_kkt_gap)
from mtl_platform_plugins.weightings.aligned_mtl import AlignedMTL, alignment_matrix
from mtl_platform_plugins.weightings.imtl import IMTL
from mtl_platform_plugins.weightings.mgda import MGDA
from mtl_platform_plugins.weightings.nash_mtl import NashMTL
from mtl_platform_plugins.weightings.upgrad import UPGrad

F64 = torch.float64
KINDS = ("random", "parallel", "opposite", "scaled", "lowrank", "conflict")
ALL = {"mgda": MGDA, "nash_mtl": NashMTL, "upgrad": UPGrad, "imtl": IMTL, "aligned_mtl": AlignedMTL}


def family(kind, m, p=30, seed=0):
    """A random (m × p) float64 Jacobian of one of the test families."""
    gen = torch.Generator().manual_seed(seed * 1000 + m)
    j = torch.randn(m, p, generator=gen, dtype=F64)
    if kind == "parallel":      # all rows within ~1e-4 of one direction
        j = torch.randn(p, generator=gen, dtype=F64) + 1e-4 * j
    elif kind == "opposite":    # rows alternate ±base, up to 1e-3 noise
        sign = torch.tensor([(-1.0) ** i for i in range(m)], dtype=F64)
        j = sign[:, None] * torch.randn(p, generator=gen, dtype=F64) + 1e-3 * j
    elif kind == "scaled":      # row norms spread over 1e-3 .. 1e3
        j = j * 10 ** (torch.rand(m, 1, generator=gen, dtype=F64) * 6 - 3)
    elif kind == "lowrank":     # rank 2
        j = torch.randn(m, 2, generator=gen, dtype=F64) @ torch.randn(2, p, generator=gen, dtype=F64)
    elif kind == "conflict":    # mean pulled out: many negative inner products
        j = j - 0.8 * j.mean(0)
    return j


def tasks(m):
    return [f"t{i}" for i in range(m)]


def run(weighting, j, losses=None):
    losses = torch.rand(j.shape[0], dtype=F64) + 0.5 if losses is None else losses
    return call_weighting(weighting, losses, j)


def identical(m, p=20, seed=3):
    g = torch.randn(p, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return g, g.expand(m, p).clone()


# --------------------------------------------------------------------------------------------
# reference solvers (brute force, independent of the code under test)

def brute_min_norm(gram):
    """Exact min-norm weights by enumerating every support and solving its KKT system."""
    m = gram.shape[0]
    best, best_f = None, math.inf
    for r in range(1, m + 1):
        for support in itertools.combinations(range(m), r):
            s = list(support)
            a = torch.zeros(r + 1, r + 1, dtype=F64)
            a[:r, :r] = gram[s][:, s]
            a[:r, r] = 1
            a[r, :r] = 1
            rhs = torch.zeros(r + 1, 1, dtype=F64)
            rhs[r] = 1
            sol = torch.linalg.lstsq(a, rhs, driver="gelsd").solution[:, 0]
            w = torch.zeros(m, dtype=F64)
            w[s] = sol[:r]
            if (w < -1e-12).any() or abs(float(w.sum()) - 1) > 1e-9:
                continue
            w = w.clamp_min(0) / w.clamp_min(0).sum()
            f = float(w @ gram @ w)
            if f < best_f:
                best, best_f = w, f
    return best


def simplex_grid(m, steps):
    """Every point of the simplex with coordinates in {0, 1/steps, …, 1} (m = 2 or 3)."""
    if m == 2:
        a = torch.arange(steps + 1, dtype=F64) / steps
        return torch.stack([a, 1 - a], 1)
    i, k = torch.meshgrid(torch.arange(steps + 1), torch.arange(steps + 1), indexing="ij")
    keep = (i + k) <= steps
    a, b = i[keep].to(F64) / steps, k[keep].to(F64) / steps
    return torch.stack([a, b, 1 - a - b], 1)


# --------------------------------------------------------------------------------------------
# solvers

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


# --------------------------------------------------------------------------------------------
# registration and common properties

def test_registered_with_their_params():
    reg, _ = registry.load()
    comps = {c.name: c for c in reg.components("weighting")}
    want = {"mgda": {"normalization", "iterations", "tol", "ub"},
            "nash_mtl": {"update_weights_every", "optim_niter", "max_norm", "eps"},
            "upgrad": {"iterations", "tol"}, "imtl": {"rcond"}, "aligned_mtl": {"eps", "preferences", "scale"}}
    for name, params in want.items():
        cls = comps[name].cls
        assert cls is ALL[name]
        assert params <= {p.name for p in cls.declared_params()}
        assert cls.scales_heads is False and cls.needs.value == "gramian"
        assert cls.__doc__.strip().splitlines()[0]


@pytest.mark.parametrize("name", sorted(ALL))
def test_finite_weights_of_the_right_shape_on_every_family(name):
    for kind in KINDS:
        for m in (2, 3, 5, 10):
            j = family(kind, m, p=40, seed=7)
            w, d = run(ALL[name](tasks(m)), j)
            assert w.shape == (m,) and torch.isfinite(w).all() and torch.isfinite(d).all(), (name, kind, m)
    # float32 Gramian in, float32 weights out
    j = family("random", 4).float()
    w = ALL[name](tasks(4)).weights(torch.ones(4), gram=j @ j.T)
    assert w.dtype == torch.float32 and torch.isfinite(w).all()
    with pytest.raises(TypeError, match="Gramian"):
        ALL[name](tasks(2)).weights(torch.ones(2))


@pytest.mark.parametrize("name", sorted(ALL))
def test_permuting_tasks_permutes_the_weights(name):
    for m in (3, 6):
        j = family("conflict", m, seed=4)
        perm = torch.randperm(m, generator=torch.Generator().manual_seed(m))
        w, _ = run(ALL[name](tasks(m)), j, torch.ones(m, dtype=F64))
        wp, _ = run(ALL[name](tasks(m)), j[perm], torch.ones(m, dtype=F64))
        assert torch.allclose(wp, w[perm], rtol=1e-8, atol=1e-10), name


# --------------------------------------------------------------------------------------------
# MGDA

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


# --------------------------------------------------------------------------------------------
# Nash-MTL

def test_nash_solves_the_bargaining_condition():
    for kind in ("random", "scaled", "conflict", "parallel"):
        for m in (2, 3, 5, 8, 10):
            j = family(kind, m, p=40, seed=m)
            gram = j @ j.T
            nash = NashMTL(tasks(m), max_norm=0.0, eps=0.0)
            w, d = run(nash, j)
            assert (w > 0).all()
            assert torch.allclose(w * (gram @ w), torch.ones(m, dtype=F64), atol=1e-8), (kind, m)
            assert float(nash.residual) < 1e-8
            assert abs(float(d @ d) - m) < 1e-6 * m                      # ‖d‖² = m


def test_nash_scale_behaviour():
    j = family("random", 4, seed=1)
    alpha, d = run(NashMTL(tasks(4), max_norm=0.0, eps=0.0), j)
    for s in (1e-3, 7.0, 1e3):
        js = j.clone()
        js[2] *= s
        alpha_s, d_s = run(NashMTL(tasks(4), max_norm=0.0, eps=0.0), js)
        want = alpha.clone()
        want[2] /= s
        assert torch.allclose(alpha_s, want, rtol=1e-9)
        assert torch.allclose(d_s, d, rtol=1e-9, atol=1e-12)


def test_nash_identical_directions_and_max_norm():
    g, _ = identical(3)
    u = g / g.norm()
    c = torch.tensor([1.0, 2.0, 5.0], dtype=F64)
    j = c[:, None] * u
    alpha, d = run(NashMTL(tasks(3), max_norm=0.0, eps=0.0), j)
    assert torch.allclose(alpha, 1 / (c * math.sqrt(3)), rtol=1e-8)
    assert torch.allclose(d, math.sqrt(3) * u, rtol=1e-8)
    # the default clip (authors' clip_grad_norm_ with max_norm = 1): ‖d‖ = √m → 1
    j = family("random", 4, seed=3)
    _, d = run(NashMTL(tasks(4)), j)
    assert abs(float(d.norm()) - 1.0) < 1e-8
    _, d = run(NashMTL(tasks(4), max_norm=10.0), j)
    assert abs(float(d.norm()) - 2.0) < 1e-6                              # below the clip: √4


def test_nash_update_weights_every_and_state_dict_round_trip():
    nash = NashMTL(tasks(3), update_weights_every=3, max_norm=0.0, eps=0.0)
    grams = [(lambda j: j @ j.T)(family("random", 3, seed=s)) for s in range(5)]
    ones = torch.ones(3, dtype=F64)
    w0 = nash.weights(ones, gram=grams[0])
    assert torch.allclose(w0 * (grams[0] @ w0), ones, atol=1e-8)
    w1 = nash.weights(ones, gram=grams[1])
    w2 = nash.weights(ones, gram=grams[2])
    assert torch.allclose(w1, w0.float().to(F64)) and torch.allclose(w2, w1)   # reused between updates
    state = nash.state_dict()
    assert "alpha" in state and "_extra_state" in state
    fresh = NashMTL(tasks(3), update_weights_every=3, max_norm=0.0, eps=0.0)
    fresh.load_state_dict(state)
    assert fresh.calls == 3 and torch.equal(fresh.alpha, nash.alpha)
    w3 = nash.weights(ones, gram=grams[3])
    w3_fresh = fresh.weights(ones, gram=grams[3])
    assert torch.allclose(w3, w3_fresh, atol=1e-12)
    assert torch.allclose(w3 * (grams[3] @ w3), ones, atol=1e-8)         # a new solve on call 3


def test_nash_pareto_stationary_stays_finite():
    j = torch.tensor([[1.0, 2.0, 0.0], [-1.0, -2.0, 0.0]], dtype=F64)   # exactly opposite
    nash = NashMTL(tasks(2))
    w, d = run(nash, j)
    assert torch.isfinite(w).all() and (w > 0).all() and d.norm() <= 1.0 + 1e-9
    assert torch.allclose(w[0], w[1])


# --------------------------------------------------------------------------------------------
# UPGrad

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


# --------------------------------------------------------------------------------------------
# IMTL-G

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


# --------------------------------------------------------------------------------------------
# Aligned-MTL

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


# --------------------------------------------------------------------------------------------
# through the engine

class TinyNet(nn.Module):
    has_rep = True

    def __init__(self, m):
        super().__init__()
        torch.manual_seed(0)
        self.shared = nn.Linear(4, 6).double()
        self.heads = nn.ModuleList(nn.Linear(6, 1).double() for _ in range(m))
        self.rep = None

    def forward(self, x):
        z = torch.tanh(self.shared(x))
        self.rep = z
        return [h(z).squeeze(-1) for h in self.heads]

    def shared_parameters(self):
        return list(self.shared.parameters())

    def task_parameters(self, task):
        return list(self.heads[int(task[1:])].parameters())

    def parameter_blocks(self):
        return [self.shared_parameters()]


@pytest.mark.parametrize("name", sorted(ALL))
def test_engine_applies_the_weighted_combination(name):
    m = 3
    model = TinyNet(m)
    weighting = ALL[name](tasks(m))
    x = torch.randn(8, 4, dtype=F64, generator=torch.Generator().manual_seed(1))
    outs = model(x)
    losses = {t: (o ** 2).mean() for t, o in zip(tasks(m), outs)}
    shared = model.shared_parameters()
    jac = torch.stack([torch.cat([g.flatten() for g in torch.autograd.grad(losses[t], shared, retain_graph=True)])
                       for t in tasks(m)])
    expected_w = ALL[name](tasks(m)).weights(torch.stack(list(losses.values())).detach(), gram=jac @ jac.T)
    GradientEngine(model, weighting, tasks(m)).backward(losses)
    got = torch.cat([p.grad.flatten() for p in shared])
    assert torch.allclose(got, expected_w @ jac, atol=1e-10)


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
