"""GH++ (spec gradients.md §1.3, §1.14): the spec vectors, the rotate option, the ordered
pairwise rule against an explicit-vector reference over random families, Eq. 43 with its ranges,
the priority, a negative weight and the clamp. Its bounds are in ``test_gh.py``."""
import math

import pytest
import torch

from mtl_platform.errors import UserError
from mtl_platform_plugins.weightings.gh import harmonised_coefficients
from mtl_platform_plugins.weightings.gh_plus_plus import GHPlusPlus, rotation_terms

from seed_weighting_cases import ATOL, D, FAMILIES, G1, G2, J2, TWO_TASK, names, run, t

pytestmark = pytest.mark.usefixtures("one_thread")


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
