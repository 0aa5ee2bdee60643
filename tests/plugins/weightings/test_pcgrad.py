"""PCGrad (Yu et al. 2020, Algorithm 1): two tasks equal GH, a hand-computed three-task case,
the Gramian path against explicit-vector projection in index and random order, the order and
the global RNG, identical or conflict-free gradients."""
import pytest
import torch

from mtl_platform_plugins.weightings._solvers import other_tasks
from mtl_platform_plugins.weightings.gh import GH
from mtl_platform_plugins.weightings.pcgrad import PCGrad, pcgrad_coefficients

from seed_weighting_cases import D, FAMILIES, J2, TWO_TASK, names, run, t

pytestmark = pytest.mark.usefixtures("one_thread")


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
