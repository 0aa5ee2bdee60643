"""The seed gradient weightings GH, GH++, PCGrad, Domain Gradient Equilibrium and CAGrad.

Numeric vectors from spec gradients.md §1.14 and §2.6, explicit-vector reference
implementations (independent of the Gramian/coefficient code path), and properties over
families of random Jacobians (m = 2..10, P = 20..50, float64).
"""
import math

import pytest
import torch

from mtl_platform import registry
from mtl_platform.contracts import Needs
from mtl_platform.errors import UserError
from mtl_platform.gradients.combine import call_weighting
from mtl_platform_plugins.weightings._solvers import other_tasks
from mtl_platform_plugins.weightings.cagrad import CAGrad, dual_objective
from mtl_platform_plugins.weightings.equilibrium import Equilibrium, adjusted_specifics
from mtl_platform_plugins.weightings.gh import GH, harmonised_coefficients
from mtl_platform_plugins.weightings.gh_plus_plus import GHPlusPlus, rotation_terms
from mtl_platform_plugins.weightings.pcgrad import PCGrad, pcgrad_coefficients

D = torch.float64
ATOL = 1e-6


pytestmark = pytest.mark.usefixtures("one_thread")


def names(m):
    return [f"t{i}" for i in range(m)]


def run(weighting, jacobian):
    """(weights, combined gradient) through the engine's reference semantics."""
    return call_weighting(weighting, torch.ones(jacobian.shape[0], dtype=jacobian.dtype), jacobian)


def t(*rows):
    return torch.tensor(rows, dtype=D)


def families(seed=0, kinds=("gauss", "near_parallel", "near_opposite", "scaled", "mixed")):
    """Random Jacobians: (label, J) for m = 2..10, P in [20, 50], float64."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for m in range(2, 11):
        for kind in kinds:
            p = int(torch.randint(20, 51, (1,), generator=gen))
            noise = torch.randn(m, p, generator=gen, dtype=D)
            base = torch.randn(1, p, generator=gen, dtype=D)
            if kind == "gauss":
                j = noise
            elif kind == "near_parallel":
                j = base * (0.5 + torch.rand(m, 1, generator=gen, dtype=D)) + 1e-4 * noise
            elif kind == "near_opposite":
                signs = torch.tensor([(-1.0) ** i for i in range(m)], dtype=D)[:, None]
                j = signs * base + 1e-4 * noise
            elif kind == "scaled":
                j = noise * 10.0 ** (6 * torch.rand(m, 1, generator=gen, dtype=D) - 3)
            else:  # mixed: a duplicated row, a conflicting row, scaled rows
                j = noise * 10.0 ** (2 * torch.rand(m, 1, generator=gen, dtype=D) - 1)
                j[-1] = j[0]
                j[1] = -0.9 * j[0] + 0.1 * noise[1]
            out.append((f"{kind}-m{m}-p{p}", j))
    return out


FAMILIES = families()
TWO_TASK = [(label, j) for label, j in families(seed=1) + families(seed=2) if j.shape[0] == 2] + \
    [(f"gauss2-{i}", torch.randn(2, 30, generator=torch.Generator().manual_seed(100 + i), dtype=D)) for i in range(30)]

ALL = [
    ("gh", lambda m: GH(names(m))),
    ("gh_plus_plus", lambda m: GHPlusPlus(names(m))),
    ("gh_plus_plus_rotate", lambda m: GHPlusPlus(names(m), rotate=True)),
    ("pcgrad", lambda m: PCGrad(names(m))),
    ("equilibrium", lambda m: Equilibrium(names(m))),
    ("cagrad", lambda m: CAGrad(names(m))),
]


# ---------------------------------------------------------------------------------------------
# registration and contract

def test_registered_with_their_declarations():
    reg, _ = registry.load()
    found = {c.name: c.cls for c in reg.components("weighting")}
    expected = {"gh": True, "gh_plus_plus": True, "pcgrad": False, "equilibrium": False, "cagrad": False}
    for name, scales_heads in expected.items():
        assert name in found, name
        assert found[name].needs is Needs.GRAMIAN, name
        assert found[name].scales_heads is scales_heads, name
        assert found[name].__doc__.strip().splitlines()[0], name


@pytest.mark.parametrize("label,make", ALL, ids=[a for a, _ in ALL])
def test_finite_weights_of_the_right_shape_over_random_families(label, make):
    for fam, j in FAMILIES:
        weighting = make(j.shape[0])
        w, g = run(weighting, j)
        assert w.shape == (j.shape[0],), (label, fam)
        assert w.dtype == D, (label, fam)
        assert torch.isfinite(w).all() and torch.isfinite(g).all(), (label, fam, w)


@pytest.mark.parametrize("label,make", ALL, ids=[a for a, _ in ALL])
def test_float32_and_a_single_task(label, make):
    j = torch.randn(4, 25)
    w = make(4).weights(torch.ones(4), gram=j @ j.T)
    assert w.dtype == torch.float32 and w.shape == (4,) and torch.isfinite(w).all()
    j1 = torch.randn(1, 25, dtype=D)
    w1, _ = run(make(1), j1)
    assert w1.shape == (1,) and torch.isfinite(w1).all()


@pytest.mark.parametrize("label,make", ALL, ids=[a for a, _ in ALL])
def test_the_gramian_is_required(label, make):
    with pytest.raises(TypeError):
        make(2).weights(torch.ones(2))


# ---------------------------------------------------------------------------------------------
# GH

G1, G2 = t(1.0, 0.0), t(-1.0, 1.0)   # θ = 135°
J2 = torch.stack([G1, G2])


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


# ---------------------------------------------------------------------------------------------
# GH++

def test_gh_plus_plus_spec_vectors():
    w, g = run(GHPlusPlus(["a", "b"], lam=0.5), J2)
    assert torch.allclose(w, t(1.3901806, 0.6098194), atol=ATOL)
    assert torch.allclose(g, t(0.7803613, 0.6098194), atol=ATOL)
    w0, _ = run(GHPlusPlus(["a", "b"], lam=0.0), J2)
    assert torch.allclose(w0, t(1.0, 0.2346331), atol=ATOL)
    w1, _ = run(GHPlusPlus(["a", "b"], lam=1.0), J2)
    assert torch.allclose(w1, t(1.7653669, 1.0), atol=ATOL)


def test_gh_plus_plus_rotate_spec_vectors():
    gram = J2 @ J2.T
    before = torch.tensor([[False, True], [False, False]])
    own, cross, _ = rotation_terms(gram, before, 0.5)
    hat1 = (1 + own[0, 1]) * G1 + cross[0, 1] * G2
    hat2 = (1 + own[1, 0]) * G2 + cross[1, 0] * G1
    assert torch.allclose(hat1, t(0.9238795, 0.3826834), atol=ATOL)
    assert torch.allclose(hat2, t(-0.5411961, 1.3065630), atol=ATOL)
    assert abs(float(hat1 @ hat2)) < ATOL
    assert torch.allclose(hat1.norm(), G1.norm()) and torch.allclose(hat2.norm(), G2.norm())
    w, g = run(GHPlusPlus(["a", "b"], lam=0.5, rotate=True), J2)
    assert torch.allclose(w, t(2.0719298, 1.6892464), atol=ATOL)
    assert torch.allclose(g, hat1 + hat2, atol=ATOL)


def test_gh_plus_plus_rotate_makes_pairs_orthogonal_and_keeps_norms():
    for lam in (0.0, 0.3, 0.5, 1.0):
        for fam, j in TWO_TASK:
            if float(j[0] @ j[1]) >= 0:
                continue
            before = torch.tensor([[False, True], [False, False]])
            own, cross, _ = rotation_terms(j @ j.T, before, lam)
            hat1 = (1 + own[0, 1]) * j[0] + cross[0, 1] * j[1]
            hat2 = (1 + own[1, 0]) * j[1] + cross[1, 0] * j[0]
            scale = float(j[0].norm() * j[1].norm())
            assert abs(float(hat1 @ hat2)) < 1e-7 * scale, (lam, fam)
            assert torch.allclose(hat1.norm(), j[0].norm(), rtol=1e-7), (lam, fam)
            assert torch.allclose(hat2.norm(), j[1].norm(), rtol=1e-7), (lam, fam)
            if lam == 1.0:  # spec §1.3: ĝ₁ = GH's g̃₁ / sin θ
                sin = math.sqrt(1 - float(j[0] @ j[1]) ** 2 / scale ** 2)
                gh_row = (harmonised_coefficients(j @ j.T) @ j)[0]
                assert torch.allclose(hat1, gh_row / sin, rtol=1e-6, atol=1e-9 * float(j[0].norm())), fam
            w, g = run(GHPlusPlus(["a", "b"], lam=lam, rotate=True), j)
            assert torch.allclose(g, hat1 + hat2, rtol=1e-9, atol=1e-9 * float(j.norm())), (lam, fam)


def gh_plus_plus_reference(j, lam, order):
    """Spec §1.14 ordered pairwise products, from explicit vectors."""
    m = j.shape[0]
    tau = [1.0] * m
    for a in range(m):
        for b in range(a + 1, m):
            i, k = order[a], order[b]  # i comes before k
            dot = float(j[i] @ j[k])
            if dot < 0:
                cos = max(-1.0, min(1.0, dot / float(j[i].norm() * j[k].norm())))
                phi = math.acos(cos) - math.pi / 2
                tau[i] *= 1 + 2 * math.sin(lam * phi / 2)
                tau[k] *= 1 + 2 * math.sin((lam - 1) * phi / 2)
    return torch.tensor(tau, dtype=D)


def test_gh_plus_plus_matches_the_ordered_pairwise_rule_over_random_families():
    for lam in (0.0, 0.5, 0.8):
        for fam, j in FAMILIES:
            m = j.shape[0]
            w, _ = run(GHPlusPlus(names(m), lam=lam), j)
            assert torch.allclose(w, gh_plus_plus_reference(j, lam, list(range(m))), rtol=1e-9, atol=1e-9), fam
            prio = names(m)[m - 1]
            w_p, _ = run(GHPlusPlus(names(m), lam=lam, priority=prio), j)
            order = [m - 1] + list(range(m - 1))
            assert torch.allclose(w_p, gh_plus_plus_reference(j, lam, order), rtol=1e-9, atol=1e-9), fam


def test_gh_plus_plus_two_tasks_is_eq_43_with_its_ranges():
    for fam, j in TWO_TASK:
        w, _ = run(GHPlusPlus(["a", "b"]), j)
        if float(j[0] @ j[1]) >= 0:
            assert torch.equal(w, torch.ones(2, dtype=D)), fam
            continue
        assert 1 < float(w[0]) <= 1.7653669 + 1e-9 and 0.2346331 - 1e-9 <= float(w[1]) < 1, (fam, w)
        cos = float(j[0] @ j[1] / (j[0].norm() * j[1].norm()))
        phi = math.acos(cos) - math.pi / 2
        assert abs(float(w[0]) - (1 + 2 * math.sin(0.5 * phi / 2))) < 1e-10
        assert abs(float(w[1]) - (1 + 2 * math.sin(-0.5 * phi / 2))) < 1e-10


def test_gh_plus_plus_priority_decides_which_task_is_up_weighted():
    w_ab, _ = run(GHPlusPlus(["a", "b"]), J2)
    w_ba, _ = run(GHPlusPlus(["b", "a"]), J2.flip(0))                  # same order, tasks listed reversed
    w_prio, _ = run(GHPlusPlus(["b", "a"], priority="a"), J2.flip(0))  # priority restores a first
    assert float(w_ba[0]) > 1 > float(w_ba[1])                           # the listed-first task is up-weighted
    assert torch.allclose(w_prio, w_ab.flip(0), atol=1e-12)
    with pytest.raises(UserError):
        GHPlusPlus(["a", "b"], priority="c")
    with pytest.raises(UserError):
        GHPlusPlus(["a", "b"], lam=1.5)


def test_gh_plus_plus_negative_weight_and_the_clamp():
    j = t([1.0, 0.0], [-2.0, 0.0])  # θ = 180°
    w, _ = run(GHPlusPlus(["a", "b"], lam=0.0), j)
    assert torch.allclose(w, t(1.0, 1 - 2 * math.sin(math.pi / 4)), atol=ATOL)  # τ₂ = −0.414 (spec §1.3)
    assert float(w[1]) < 0
    w_c, _ = run(GHPlusPlus(["a", "b"], lam=0.0, clamp_nonnegative=True), j)
    assert torch.allclose(w_c, t(1.0, 0.0))
    w_r, _ = run(GHPlusPlus(["a", "b"], lam=0.5, rotate=True), j)  # anti-parallel: the documented limit,
    assert torch.allclose(w_r, torch.full((2,), math.cos(math.pi / 4), dtype=D))  # each scaled by cos(λφ)


def test_gh_plus_plus_identical_or_conflict_free_gives_one():
    common = torch.randn(1, 30, dtype=D).repeat(4, 1)
    for rotate in (False, True):
        w, g = run(GHPlusPlus(names(4), rotate=rotate), common)
        assert torch.equal(w, torch.ones(4, dtype=D))  # τ = 1: 4 × the common gradient
        assert torch.allclose(g, 4 * common[0])
        assert torch.equal(run(GHPlusPlus(names(3), rotate=rotate), torch.rand(3, 20, dtype=D))[0],
                           torch.ones(3, dtype=D))


# ---------------------------------------------------------------------------------------------
# PCGrad

def pcgrad_reference(j, order):
    """Algorithm 1 of Yu et al. with explicit vectors; ``order[i]`` lists the j ≠ i in order."""
    total = torch.zeros(j.shape[1], dtype=j.dtype)
    for i in range(j.shape[0]):
        gi = j[i].clone()
        for k in order[i]:
            dot = gi @ j[k]
            if dot < 0:
                gi = gi - dot / (j[k] @ j[k]) * j[k]
        total = total + gi
    return total


def test_pcgrad_two_tasks_equals_gh_and_leaves_no_conflict():
    for fam, j in TWO_TASK + [("spec", J2)]:
        _, g_gh = run(GH(["a", "b"]), j)
        for shuffle in (True, False):
            _, g = run(PCGrad(["a", "b"], shuffle=shuffle), j)
            assert torch.allclose(g, g_gh, rtol=1e-12, atol=1e-12 * float(j.abs().max())), fam
            scale = float(j.norm(dim=1).max() * g.norm())
            assert float(g @ j[0]) >= -1e-10 * scale and float(g @ j[1]) >= -1e-10 * scale, fam


def test_pcgrad_hand_computed_three_tasks():
    j = t([1.0, 0.0], [0.0, 1.0], [-1.0, -1.0])
    # index order: g1 meets g2 (g1·g2 = 0, kept) then g3 (−1: g1 + ½g3 = (½, −½));
    # g2 likewise → g2 + ½g3; g3 meets g1 (−1: g3 + g1 = (0, −1)) then g2 (−1: + g2 = 0).
    # Σ = 2(g1 + g2 + g3) = 0.
    w, g = run(PCGrad(names(3), shuffle=False), j)
    assert torch.allclose(w, t(2.0, 2.0, 2.0), atol=1e-12)
    assert torch.allclose(g, torch.zeros(2, dtype=D), atol=1e-12)
    # the order matters beyond two tasks: if g1 meets g3 first, g1 + ½g3 = (½, −½) now conflicts
    # with g2 and becomes (½, 0) = g1 + ½g2 + ½g3, so the sum is ½g2 = (0, ½)
    ref = pcgrad_reference(j, [[2, 1], [0, 2], [0, 1]])
    assert torch.allclose(ref, t(0.0, 0.5), atol=1e-12)
    coeffs = pcgrad_coefficients(j @ j.T, torch.tensor([[2, 1], [0, 2], [0, 1]]))
    assert torch.allclose(coeffs.sum(0), t(2.0, 2.5, 2.0), atol=1e-12)


def test_pcgrad_matches_algorithm_1_in_index_and_random_order():
    for fam, j in FAMILIES:
        m = j.shape[0]
        _, g = run(PCGrad(names(m), shuffle=False), j)
        ref = pcgrad_reference(j, [[k for k in range(m) if k != i] for i in range(m)])
        assert torch.allclose(g, ref, rtol=1e-8, atol=1e-8 * float(ref.abs().max())), fam
        torch.manual_seed(m)
        _, g_rand = run(PCGrad(names(m), shuffle=True), j)
        torch.manual_seed(m)  # the same draw from torch's global generator
        order = other_tasks(m, True, "cpu")
        assert sorted(order[0].tolist()) == list(range(1, m))
        ref = pcgrad_reference(j, order.tolist())
        assert torch.allclose(g_rand, ref, rtol=1e-8, atol=1e-8 * float(ref.abs().max())), fam


def test_pcgrad_order_matters_beyond_two_tasks_and_shuffle_uses_the_global_rng():
    j = torch.randn(6, 30, generator=torch.Generator().manual_seed(7), dtype=D)
    j[1:] -= 0.6 * j[0]  # many conflicts
    pc = PCGrad(names(6))
    torch.manual_seed(0)
    a = run(pc, j)[0]
    torch.manual_seed(0)
    b = run(pc, j)[0]
    assert torch.equal(a, b)
    draws = {tuple(run(pc, j)[0].tolist()) for _ in range(10)}
    assert len(draws) > 1
    assert pc.state_dict() == {} or all(v.numel() == 0 for v in pc.state_dict().values())


def test_pcgrad_identical_or_conflict_free_gives_one():
    common = torch.randn(1, 30, dtype=D).repeat(5, 1)
    w, g = run(PCGrad(names(5)), common)
    assert torch.equal(w, torch.ones(5, dtype=D)) and torch.allclose(g, 5 * common[0])  # τ = 1: the sum
    assert torch.equal(run(PCGrad(names(3)), torch.rand(3, 20, dtype=D))[0], torch.ones(3, dtype=D))


# ---------------------------------------------------------------------------------------------
# Domain Gradient Equilibrium

J3 = t([1.0, 0.1], [1.0, -0.1], [-2.0, 0.0])


def test_equilibrium_spec_worked_example():
    eq = Equilibrium(names(3))
    gram = J3 @ J3.T
    specific, adjusted = adjusted_specifics(gram, 0.5, other_tasks(3, False, "cpu"))
    s_hat = adjusted @ J3
    assert torch.allclose(specific @ J3, J3, atol=1e-12)  # ḡ = 0, s = g
    assert torch.allclose(s_hat, t([0.019802, 0.198020], [0.019802, -0.198020], [-2.0, 0.0]), atol=ATOL)
    w0 = torch.ones(3, dtype=D)
    residual = w0 @ s_hat
    assert torch.allclose(residual, t(-1.960396, 0.0), atol=ATOL)
    assert torch.allclose(2 * s_hat @ residual, t(-0.0776394, -0.0776394, 7.8415842), atol=ATOL)
    w, g = run(eq, J3)
    assert torch.allclose(eq.w.to(D), t(1.0, 1.0, 0.2158416), atol=ATOL)
    r = J3 - eq.w.to(D)[:, None] * s_hat
    assert torch.allclose(r, t([0.980198, -0.098020], [0.980198, 0.098020], [-1.568317, 0.0]), atol=ATOL)
    assert torch.allclose(g, t(0.392079, 0.0), atol=ATOL)
    assert torch.allclose(g, r.sum(0), atol=1e-12)
    assert torch.allclose(eq.residual_norm.to(D), (eq.w.to(D) @ s_hat).norm(), atol=1e-6)
    eq_mean = Equilibrium(names(3), reduce="mean")
    assert torch.allclose(run(eq_mean, J3)[0], w / 3, atol=1e-12)


def equilibrium_reference(j, w0, alpha=0.5, lr=0.1, steps=1):
    """Spec §2.3 pseudocode with explicit vectors (index order, projecting against the original s_j)."""
    k = j.shape[0]
    gbar = j.mean(0)
    s = j - gbar
    sh = s.clone()
    scale = float((j * j).sum(1).mean())
    for i in range(k):
        for jj in range(k):
            if jj == i or float(s[jj] @ s[jj]) <= 1e-8 * scale:
                continue
            cos = sh[i] @ s[jj] / (sh[i].norm() * s[jj].norm())
            if float(sh[i] @ sh[i]) > 1e-8 * scale and cos > alpha:
                sh[i] = sh[i] - (sh[i] @ s[jj]) / (s[jj] @ s[jj]) * s[jj]
    w = w0.clone()
    for _ in range(steps):
        w = (w - lr * 2 * (sh @ (w @ sh))).clamp(0, 1)
    r = j - w[:, None] * sh
    return r.sum(0), w, sh, gbar


def test_equilibrium_matches_the_pseudocode_and_the_identity_over_random_families():
    for fam, j in FAMILIES:
        k = j.shape[0]
        eq = Equilibrium(names(k), w_steps=3, w_lr=0.05)
        w0 = torch.rand(k, generator=torch.Generator().manual_seed(k), dtype=D)
        eq.w.copy_(w0)
        _, g = run(eq, j)
        ref, w_ref, sh, gbar = equilibrium_reference(j, w0, lr=0.05, steps=3)
        tol = 1e-7 * float(j.abs().max())
        assert torch.allclose(eq.w.to(D), w_ref, atol=1e-6), fam
        assert torch.allclose(g, ref, atol=tol), fam
        # Σ_k r_k = K ḡ − Σ_k w_k ŝ_k (spec §2.6 item 1)
        assert torch.allclose(g, k * gbar - w_ref @ sh, atol=tol), fam


def test_equilibrium_two_tasks_is_averaging():
    for fam, j in TWO_TASK[:10]:
        eq_sum, eq_mean = Equilibrium(["a", "b"]), Equilibrium(["a", "b"], reduce="mean")
        for _ in range(3):
            w, g = run(eq_sum, j)
            assert torch.allclose(w, torch.ones(2, dtype=D), atol=1e-12), fam  # g₁ + g₂ = 2ḡ
            assert torch.allclose(eq_sum.w, torch.ones(2, dtype=D)), fam
            assert torch.allclose(run(eq_mean, j)[0], torch.full((2,), 0.5, dtype=D), atol=1e-12), fam


def test_equilibrium_identical_gradients_is_averaging():
    common = torch.randn(1, 30, dtype=D).repeat(4, 1)
    w, g = run(Equilibrium(names(4)), common)
    assert torch.allclose(w, torch.ones(4, dtype=D), atol=1e-12)  # sum: 4 × the common gradient
    assert torch.allclose(g, 4 * common[0])
    w, g = run(Equilibrium(names(4), reduce="mean"), common)
    assert torch.allclose(w, torch.full((4,), 0.25, dtype=D), atol=1e-12)  # mean: the common gradient
    assert torch.allclose(g, common[0])


def test_equilibrium_state_persists_and_round_trips():
    j = J3
    eq = Equilibrium(names(3))
    run(eq, j)
    first = eq.w.clone()
    run(eq, j)
    assert not torch.equal(eq.w, first)  # persistent: the second step starts from the first's w
    state = eq.state_dict()
    assert set(state) == {"w"}
    fresh = Equilibrium(names(3))
    fresh.load_state_dict(state)
    assert torch.equal(run(fresh, j)[0], run(eq, j)[0])
    restart = Equilibrium(names(3), w_persistent=False)
    assert torch.equal(run(restart, j)[0], run(restart, j)[0])
    assert torch.allclose(restart.w, first)


# ---------------------------------------------------------------------------------------------
# CAGrad

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
