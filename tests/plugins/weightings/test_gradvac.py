"""GradVac (Wang et al., ICLR 2021): the projection to the target cosine (zero and positive
targets), agreeing gradients left alone, the sequential adjustment for many tasks, permutation
for two tasks, per-block weights and state, reproducibility and the state round trip."""
import math

import pytest
import torch

from mtl_platform.contracts import Needs
from mtl_platform.gradients.combine import call_weighting
from mtl_platform_plugins.weightings.gradvac import GradVac

from staple_weighting_cases import D, tasks


def cos(a, b):
    return (a @ b / (a.norm() * b.norm())).item()


def test_gradvac_first_step_on_a_conflict_projects_to_the_zero_target():
    g1, g2 = torch.tensor([1.0, 0.0, 1.0], dtype=D), torch.tensor([-1.0, 2.0, 0.0], dtype=D)
    jac = torch.stack([g1, g2])
    gv = GradVac(["a", "b"], beta=0.01)
    w, update = call_weighting(gv, torch.ones(2, dtype=D), jac)
    # φ̂ = 0: a = −‖g_i‖φ/‖g_j‖ = −g_i·g_j/‖g_j‖², i.e. the conflicting component is removed
    d = (g1 @ g2).item()
    assert torch.allclose(w, torch.tensor([1 - d / (g1 @ g1).item(), 1 - d / (g2 @ g2).item()], dtype=D))
    g1_new, g2_new = g1 + (w[1] - 1) * g2, g2 + (w[0] - 1) * g1
    assert abs(cos(g1_new, g2)) < 1e-12 and abs(cos(g2_new, g1)) < 1e-12   # cos ≥ target 0
    assert torch.allclose(update, g1_new + g2_new)
    phi = cos(g1, g2)
    assert torch.allclose(gv.targets[0], torch.tensor([[0.0, 0.01 * phi], [0.01 * phi, 0.0]], dtype=D))


def test_gradvac_reaches_a_positive_target_cosine_exactly():
    gen = torch.Generator().manual_seed(3)
    jac = torch.randn(2, 40, generator=gen, dtype=D)
    jac[1] *= 50.0                                                  # very different norms
    gv = GradVac(["a", "b"])
    with torch.no_grad():
        gv.targets.fill_(0.6)
    target = gv.targets.new_tensor(0.6).item()                      # 0.6 as the float32 buffer holds it
    w, _ = call_weighting(gv, torch.ones(2, dtype=D), jac)
    assert cos(jac[0], jac[1]) < 0.6
    g1_new, g2_new = jac[0] + (w[1] - 1) * jac[1], jac[1] + (w[0] - 1) * jac[0]
    assert cos(g1_new, jac[1]) == pytest.approx(target, abs=1e-10)
    assert cos(g2_new, jac[0]) == pytest.approx(target, abs=1e-10)
    assert w.min() > 1                                              # both pulled towards the other


def test_gradvac_leaves_agreeing_gradients_alone():
    gen = torch.Generator().manual_seed(0)
    base = torch.rand(30, generator=gen, dtype=D) + 0.5             # all positive: cos > 0 = φ̂
    jac = base + 0.3 * torch.rand(5, 30, generator=gen, dtype=D)
    torch.manual_seed(0)
    w, update = call_weighting(GradVac(tasks(5)), torch.ones(5, dtype=D), jac)
    assert torch.equal(w, torch.ones(5, dtype=D))
    assert torch.allclose(update, jac.sum(0))
    # barely above the target is still above it: no adjustment (cos = 1e-3 > φ̂ = 0; and with
    # φ̂ = 0.5, cos = 0.501 > 0.5)
    for target, c in ((0.0, 1e-3), (0.5, 0.501)):
        pair = torch.tensor([[1.0, 0.0], [c, math.sqrt(1 - c * c)]], dtype=D)
        gv = GradVac(["a", "b"])
        with torch.no_grad():
            gv.targets.fill_(target)
        w, _ = call_weighting(gv, torch.ones(2, dtype=D), pair)
        assert torch.equal(w, torch.ones(2, dtype=D))


def test_gradvac_sequential_adjustment_for_many_tasks():
    """m = 4 with the targets all 0 and every pair conflicting: each g_i' is adjusted in turn,
    and after the last adjustment g_i' is orthogonal to the last task it met (cos = target)."""
    gen = torch.Generator().manual_seed(5)
    m, p = 4, 25
    jac = torch.randn(m, p, generator=gen, dtype=D)
    torch.manual_seed(11)
    w, update = call_weighting(GradVac(tasks(m)), torch.ones(m, dtype=D), jac)
    # replay the documented algorithm in plain Python with the same random order
    torch.manual_seed(11)
    keys = torch.rand(1, m, m) + 2 * torch.eye(m)
    order = keys.argsort(-1)[0, :, : m - 1]
    total = torch.zeros(p, dtype=D)
    for i in range(m):
        gi = jac[i].clone()
        for j in order[i].tolist():
            phi = cos(gi, jac[j])
            if phi < 0:
                gi = gi - phi * gi.norm() / jac[j].norm() * jac[j]
        total += gi
    assert torch.allclose(update, total, rtol=1e-10, atol=1e-12)


def test_gradvac_permutes_with_the_tasks_for_two_tasks():
    jac = torch.tensor([[1.0, 2.0, -1.0], [-3.0, 0.5, 1.0]], dtype=D)
    w1, _ = call_weighting(GradVac(["a", "b"]), torch.ones(2, dtype=D), jac)
    w2, _ = call_weighting(GradVac(["b", "a"]), torch.ones(2, dtype=D), jac.flip(0))
    assert torch.allclose(w2, w1.flip(0))


def test_gradvac_per_block_weights_and_state():
    gen = torch.Generator().manual_seed(2)
    sizes = [10, 7, 13]
    jac = torch.randn(2, sum(sizes), generator=gen, dtype=D)
    gv = GradVac(["a", "b"], per_block=True)
    assert gv.needs is Needs.BLOCK_GRAMIANS and GradVac(["a", "b"]).needs is Needs.GRAMIAN
    out, update = call_weighting(gv, torch.ones(2, dtype=D), jac, block_sizes=sizes)
    assert out.shape == (3, 2) and gv.targets.shape == (3, 2, 2)
    start = 0
    for b, n in enumerate(sizes):   # per block = the global method on that block's slice
        single, _ = call_weighting(GradVac(["a", "b"]), torch.ones(2, dtype=D), jac[:, start:start + n])
        assert torch.allclose(out[b], single)
        assert torch.allclose(update[start:start + n], single @ jac[:, start:start + n])
        start += n
    fresh = GradVac(["a", "b"], per_block=True)
    fresh.load_state_dict(gv.state_dict())                          # lazily sized buffer
    assert torch.equal(fresh.targets, gv.targets)
    jac2 = torch.randn(2, sum(sizes), generator=gen, dtype=D)
    assert torch.equal(call_weighting(fresh, torch.ones(2, dtype=D), jac2, sizes)[0],
                       call_weighting(gv, torch.ones(2, dtype=D), jac2, sizes)[0])


def test_gradvac_is_reproducible_and_round_trips():
    gen = torch.Generator().manual_seed(9)
    jacs = [torch.randn(6, 30, generator=gen, dtype=D) for _ in range(4)]
    a = GradVac(tasks(6), beta=0.2)
    for jac in jacs[:2]:
        call_weighting(a, torch.ones(6, dtype=D), jac)
    b = GradVac(tasks(6), beta=0.2)
    b.load_state_dict(a.state_dict())
    for jac in jacs[2:]:
        torch.manual_seed(4)
        wa, _ = call_weighting(a, torch.ones(6, dtype=D), jac)
        torch.manual_seed(4)
        wb, _ = call_weighting(b, torch.ones(6, dtype=D), jac)
        assert torch.equal(wa, wb)
    assert (a.targets != 0).any()
