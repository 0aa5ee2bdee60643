"""ExcessMTL (He et al. ICML 2024): hand-computed excess risks, baselines and exponentiated
updates; the warm-up mean; an absent task; the state round trip."""
import math

import torch

from mtl_platform.gradients.combine import answer_hint, call_weighting, form
from mtl_platform_plugins.weightings.excess_mtl import ExcessMTL
from mtl_platform_plugins.weightings.trimmed_mean import TrimmedMean

F64 = torch.float64
ONES = torch.ones(2, dtype=F64)
# a third, zero coordinate (P = 3 ≠ m: the answer is task weights; a zero coordinate adds no excess)
J1 = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]], dtype=F64)
J2 = torch.tensor([[3.0, 0.0, 0.0], [0.0, 2.0, 0.0]], dtype=F64)


def test_excess_mtl_hand_steps():
    ex = ExcessMTL(["a", "b"], step_size=1.0, eps=0.0)
    # step 1: S = (1, 0 | 0, 4), Ê = (1²/√1, 2²/√4) = (1, 2): the baselines; weights stay (1, 1)
    w, _ = call_weighting(ex, ONES, J1)
    assert torch.equal(w, torch.ones(2, dtype=F64)) and torch.equal(ex.baseline, torch.tensor([1.0, 2.0], dtype=F64))
    # step 2: S = (10, 0 | 0, 8), Ê = (9/√10, 4/√8), Ê/Ê⁰ = (9/√10, √2/2): w = 2·softmax(η·Ê/Ê⁰)
    w, _ = call_weighting(ex, ONES, J2)
    a = 2 / (1 + math.exp(math.sqrt(2) / 2 - 9 / math.sqrt(10)))
    assert torch.allclose(w, torch.tensor([a, 2 - a], dtype=F64), rtol=1e-14)
    fresh = ExcessMTL(["a", "b"], step_size=1.0, eps=0.0)
    fresh.load_state_dict(ex.state_dict())
    assert torch.equal(call_weighting(fresh, ONES, J1)[0], call_weighting(ex, ONES, J1)[0])


def test_excess_mtl_warm_up_baseline_is_the_mean_excess():
    ex = ExcessMTL(["a", "b"], step_size=1.0, eps=0.0, warmup_steps=2)
    call_weighting(ex, ONES, J1)
    w, _ = call_weighting(ex, ONES, J2)                  # still warming up: the weights do not move
    assert torch.equal(w, torch.ones(2, dtype=F64))
    # baselines: the mean of steps 1 and 2, ((1 + 9/√10)/2, (2 + √2)/2)
    base = torch.tensor([(1 + 9 / math.sqrt(10)) / 2, (2 + math.sqrt(2)) / 2], dtype=F64)
    assert torch.allclose(ex.baseline, base, rtol=1e-14)
    # step 3 with J1: S = (11, 0 | 0, 12), Ê = (1/√11, 4/√12), w = 2·softmax(Ê/Ê⁰)
    w, _ = call_weighting(ex, ONES, J1)
    r = torch.tensor([1 / math.sqrt(11), 4 / math.sqrt(12)], dtype=F64) / base
    assert torch.allclose(w, 2 * torch.softmax(r, 0), rtol=1e-14)


def test_excess_mtl_leaves_an_absent_task_out():
    ex = ExcessMTL(["a", "b", "c"], step_size=1.0, eps=0.0)
    jac = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], dtype=F64)
    call_weighting(ex, torch.ones(3, dtype=F64), jac)
    before = {k: v.clone() for k, v in ex.state_dict().items()}
    absent = jac.clone()
    absent[0, 0], absent[2] = 3.0, 0.0                  # the rows of J2 for a and b, c absent
    w, _ = call_weighting(ex, torch.ones(3, dtype=F64), absent, present=torch.tensor([True, True, False]))
    assert torch.equal(ex.sq_sum[2], before["sq_sum"][2]) and ex.seen[2] == 1
    assert w[2] == 0 and torch.allclose(w.sum(), torch.tensor(2.0, dtype=F64))
    # the present tasks as in test_excess_mtl_hand_steps' step 2: Ê/Ê⁰ = (9/√10, √2/2), w = 2·softmax
    expected = 2 * torch.softmax(torch.tensor([9 / math.sqrt(10), math.sqrt(2) / 2], dtype=F64), 0)
    assert torch.allclose(w[:2], expected, rtol=1e-14)


def test_excess_mtl_with_as_many_coordinates_as_tasks_is_read_as_task_weights():
    """P = m: a loss weighting's (m,) answer is task weights (``combine.answer_hint``), not the
    gradient itself (it was read as the gradient: (1, 1) instead of wᵀJ); a Jacobian gradient
    method's (P,) answer is still the gradient."""
    ex = ExcessMTL(["a", "b"], step_size=1.0, eps=0.0)
    for jac in (J1[:, :2], J2[:, :2]):
        answer, combined = call_weighting(ex, ONES, jac)
    a = 2 / (1 + math.exp(math.sqrt(2) / 2 - 9 / math.sqrt(10)))
    assert torch.allclose(answer, torch.tensor([a, 2 - a], dtype=F64), rtol=1e-14)
    assert torch.allclose(combined, torch.tensor([a, 2 - a], dtype=F64) @ J2[:, :2], rtol=1e-14)
    assert form(answer, 2, 2, 1, answer_hint(ex)) == "weights"
    assert form(answer, 2, 2, 1, answer_hint(TrimmedMean(["a", "b"]))) == "vector"
