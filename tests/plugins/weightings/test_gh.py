"""GH (spec gradients.md §1.14, Eq. 42): the spec vectors, the vector definition over random
families, two tasks, scale invariance and permutation equivariance, conflict-free and zero
gradients. And GH's and GH++'s optional bounds (spec gradients.md §1.13 item 4; ``tau_max`` is
ours): off, the weights are exactly the paper's; on, every τ_k lies inside the bound and every
τ_k already inside is left bit for bit. Random and hard Gramians, m = 2..10, float32 and
float64, gradient norms spread from 1e-6 to 1e6."""
import math

import pytest
import torch

from mtl_platform.errors import UserError
from mtl_platform_plugins.weightings.gh import GH, harmonised_coefficients
from mtl_platform_plugins.weightings.gh_plus_plus import GHPlusPlus

from seed_weighting_cases import ATOL, D, FAMILIES, G1, G2, J2, TWO_TASK, run, t

pytestmark = pytest.mark.usefixtures("one_thread")

KINDS = ("random", "spread", "near_opposite", "tiny_against_huge", "with_zero")
DTYPES = (torch.float32, torch.float64)


def jacobian(kind, m, dtype, seed, p=40):
    """m task gradients of length p: random, with norms spread over 1e-6 … 1e6, near-opposite
    pairs, one tiny gradient against huge conflicting ones, or with one zero gradient."""
    g = torch.Generator().manual_seed(seed)
    j = torch.randn(m, p, generator=g, dtype=torch.float64)
    if kind == "spread":
        j = j * torch.logspace(-6, 6, m, dtype=torch.float64)[torch.randperm(m, generator=g)][:, None]
    elif kind == "near_opposite":
        signs = torch.tensor([(-1.0) ** i for i in range(m)], dtype=torch.float64)[:, None]
        j = signs * j[0] + 1e-3 * j
    elif kind == "tiny_against_huge":
        j[1:] = -1e6 * j[0] + j[1:]
        j[0] = 1e-6 * j[0]
    elif kind == "with_zero":
        j[m // 2] = 0.0
    return j.to(dtype)


def cases():
    for kind in KINDS:
        for m in range(2, 11):
            for dtype in DTYPES:
                yield kind, m, dtype, torch.as_tensor(jacobian(kind, m, dtype, seed=m))


def tau(weighting, j):
    gram = j @ j.T
    return weighting.weights(torch.ones(len(j), dtype=j.dtype), gram=gram)


def names(m):
    return [f"t{i}" for i in range(m)]


def test_gh_off_is_exactly_eq_42():
    for kind, m, dtype, j in cases():
        assert torch.equal(tau(GH(names(m)), j), harmonised_coefficients(j @ j.T).sum(0)), (kind, m, dtype)


@pytest.mark.parametrize("tau_max", [1.0, 1.5, 3.0, 1e3])
def test_gh_bound_caps_every_weight_and_leaves_the_others_bit_for_bit(tau_max):
    seen_cut = False
    for kind, m, dtype, j in cases():
        free, bounded = tau(GH(names(m)), j), tau(GH(names(m), tau_max=tau_max), j)
        cap = torch.tensor(tau_max, dtype=dtype)
        inside = free <= cap
        assert (bounded <= cap).all() and (bounded >= 1).all(), (kind, m, dtype, bounded)
        assert torch.equal(bounded[inside], free[inside]), (kind, m, dtype)
        assert torch.equal(bounded[~inside], cap.expand(int((~inside).sum()))), (kind, m, dtype)
        seen_cut |= bool((~inside).any())
    assert seen_cut  # the families do reach the bound


@pytest.mark.parametrize("rotate", [False, True])
@pytest.mark.parametrize("lam", [0.0, 0.2, 0.5])
def test_gh_plus_plus_clamp_and_bound_touch_only_weights_outside(rotate, lam):
    for kind, m, dtype, j in cases():
        free = tau(GHPlusPlus(names(m), lam=lam, rotate=rotate), j)
        again = tau(GHPlusPlus(names(m), lam=lam, rotate=rotate, clamp_nonnegative=False, tau_max=None), j)
        assert torch.equal(free, again)
        clamped = tau(GHPlusPlus(names(m), lam=lam, rotate=rotate, clamp_nonnegative=True), j)
        assert (clamped >= 0).all()
        assert torch.equal(clamped[free >= 0], free[free >= 0])
        assert (clamped[free < 0] == 0).all()
        cap = torch.tensor(2.0, dtype=dtype)
        both = tau(GHPlusPlus(names(m), lam=lam, rotate=rotate, clamp_nonnegative=True, tau_max=2.0), j)
        inside = (free >= 0) & (free <= cap)
        assert ((both >= 0) & (both <= cap)).all(), (kind, m, dtype, both)
        assert torch.equal(both[inside], free[inside])
        assert torch.equal(both[free > cap], cap.expand(int((free > cap).sum())))


def test_the_families_make_gh_plus_plus_weights_negative_and_above_two():
    """So the clamp and the bound above are exercised, not vacuous."""
    low = [tau(GHPlusPlus(names(m), lam=0.0), j).min() for _, m, _, j in cases()]
    high = [tau(GHPlusPlus(names(m), lam=0.5, rotate=True), j).max() for _, m, _, j in cases()]
    assert min(low) < 0 and max(high) > 2


def test_two_tasks_by_hand():
    d = torch.float64
    # g1 = (1, 0), g2 = (−1, 1): θ = 135°, GH τ = (2, 1.5) (spec §1.14)
    j = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=d)
    assert torch.allclose(tau(GH(["a", "b"]), j), torch.tensor([2.0, 1.5], dtype=d))
    assert torch.allclose(tau(GH(["a", "b"], tau_max=1.8), j), torch.tensor([1.8, 1.5], dtype=d))
    # a small conflicting g2 = (−0.01, 0.01): τ2 = 1 + 0.01/2e-4 = 51, τ1 = 1.01
    j = torch.tensor([[1.0, 0.0], [-0.01, 0.01]], dtype=d)
    free, bounded = tau(GH(["a", "b"]), j), tau(GH(["a", "b"], tau_max=10.0), j)
    assert torch.allclose(free, torch.tensor([1.01, 51.0], dtype=d))
    assert torch.allclose(bounded, torch.tensor([1.01, 10.0], dtype=d))
    # Eq. 42's identity: unbounded, τ1 g1 + τ2 g2 is the harmonised g̃ = (0.5, 0.51), which is
    # conflict-free with both; bounded, it is (0.91, 0.1): no longer g̃
    assert torch.allclose(free @ j, torch.tensor([0.5, 0.51], dtype=d))
    assert torch.allclose(bounded @ j, torch.tensor([0.91, 0.1], dtype=d))
    # GH++ with λ = 1 at θ = 135°: τ = (1.7653669, 1) (spec §1.14); bounded at 1.5: (1.5, 1)
    j = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=d)
    assert torch.allclose(tau(GHPlusPlus(["a", "b"], lam=1.0), j), torch.tensor([1.7653669, 1.0], dtype=d))
    assert torch.allclose(tau(GHPlusPlus(["a", "b"], lam=1.0, tau_max=1.5), j), torch.tensor([1.5, 1.0], dtype=d))
    # GH++ with λ = 0 at θ = 180°: τ2 = 1 − 2 sin(π/4) = −0.414; clamped: 0
    j = torch.tensor([[1.0, 0.0], [-2.0, 0.0]], dtype=d)
    assert torch.allclose(tau(GHPlusPlus(["a", "b"], lam=0.0), j),
                          torch.tensor([1.0, 1 - 2 * math.sin(math.pi / 4)], dtype=d))
    assert torch.equal(tau(GHPlusPlus(["a", "b"], lam=0.0, clamp_nonnegative=True), j),
                       torch.tensor([1.0, 0.0], dtype=d))


@pytest.mark.parametrize("cls", [GH, GHPlusPlus])
@pytest.mark.parametrize("bad", [0.5, float("nan"), float("inf")])
def test_a_bound_below_one_or_not_finite_is_refused(cls, bad):
    with pytest.raises(UserError, match=r"tau_max: got .*, expected finite float >= 1$"):
        cls(["a", "b"], tau_max=bad)


def test_the_config_refuses_a_bound_below_one_in_one_line():
    from mtl_platform import registry
    from mtl_platform.config import resolve

    reg, _ = registry.load()
    with pytest.raises(UserError) as err:
        resolve({"domain": {"name": "synthetic_regression"}, "weighting": {"name": "gh", "tau_max": 0.5}}, reg)
    assert "weighting.tau_max" in str(err.value) and "expected finite float >= 1" in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------
# spec vectors, the vector definition and properties over random families (spec gradients.md §1.14)

def test_gh_spec_vectors():
    w, g = run(GH(["a", "b"]), J2)
    assert torch.allclose(w, t(2.0, 1.5), atol=ATOL)
    assert torch.allclose(g, t(0.5, 1.5), atol=ATOL)
    rows = harmonised_coefficients(J2 @ J2.T) @ J2
    assert torch.allclose(rows[0], t(0.5, 0.5), atol=ATOL)
    assert torch.allclose(rows[1], t(0.0, 1.0), atol=ATOL)
    assert abs(float(rows[0] @ G2)) < ATOL and abs(float(rows[1] @ G1)) < ATOL


def gh_reference(j):
    """Spec §1.14 with explicit vectors: Σ_i [g_i − Σ_{j≠i} δ(g_i·g_j<0) (g_i·g_j/‖g_j‖²) g_j]."""
    total = torch.zeros(j.shape[1], dtype=j.dtype)
    for i in range(j.shape[0]):
        gi = j[i].clone()
        for k in range(j.shape[0]):
            dot = j[i] @ j[k]
            if k != i and dot < 0:
                gi = gi - dot / (j[k] @ j[k]) * j[k]
        total = total + gi
    return total


def test_gh_matches_the_vector_definition_over_random_families():
    for fam, j in FAMILIES:
        _, g = run(GH(names(j.shape[0])), j)
        ref = gh_reference(j)
        assert torch.allclose(g, ref, rtol=1e-8, atol=1e-8 * ref.abs().max()), fam


def test_gh_two_tasks_is_eq_42_and_conflict_free():
    for fam, j in TWO_TASK:
        w, g = run(GH(["a", "b"]), j)
        d, n1, n2 = j[0] @ j[1], j[0] @ j[0], j[1] @ j[1]
        conflict = float(d < 0)
        assert torch.allclose(w, torch.stack([1 - conflict * d / n1, 1 - conflict * d / n2]), rtol=1e-10), fam
        assert (w >= 1).all(), fam
        scale = j.norm(dim=1).max() * g.norm()
        assert float(g @ j[0]) >= -1e-10 * scale and float(g @ j[1]) >= -1e-10 * scale, fam
        rows = harmonised_coefficients(j @ j.T) @ j          # obtuse → acute (spec §1.2 geometry)
        assert float(rows[0] @ rows[1]) >= -1e-10 * float(rows.norm(dim=1).prod() + 1e-300), fam


def test_gh_never_down_weights_is_scale_invariant_and_permutation_equivariant():
    for fam, j in FAMILIES:
        m = j.shape[0]
        w, _ = run(GH(names(m)), j)
        assert (w >= 1 - 1e-12).all(), fam
        w_scaled, _ = run(GH(names(m)), 1e3 * j)
        assert torch.allclose(w_scaled, w, rtol=1e-9), fam
        perm = torch.randperm(m, generator=torch.Generator().manual_seed(m))
        w_perm, _ = run(GH(names(m)), j[perm])
        assert torch.allclose(w_perm, w[perm], rtol=1e-12), fam


def test_gh_without_conflict_orthogonal_or_identical_is_the_plain_sum():
    assert torch.equal(run(GH(names(3)), torch.eye(3, dtype=D))[0], torch.ones(3, dtype=D))  # orthogonal: strict δ
    positive = torch.rand(4, 20, dtype=D)  # all inner products > 0
    assert torch.equal(run(GH(names(4)), positive)[0], torch.ones(4, dtype=D))
    common = torch.randn(1, 30, dtype=D).repeat(5, 1)
    w, g = run(GH(names(5)), common)
    assert torch.equal(w, torch.ones(5, dtype=D))  # τ = 1: the update is 5 × the common gradient
    assert torch.allclose(g, 5 * common[0])


def test_gh_zero_gradient_keeps_weight_one():
    j = torch.randn(3, 20, dtype=D)
    j[1] = 0
    w, _ = run(GH(names(3)), j)
    assert w[1] == 1 and torch.isfinite(w).all()
