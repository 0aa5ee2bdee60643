"""MoCo (Fernando et al. ICLR 2023): two hand-computed tracking and λ steps, the authors'
normalisation and rate decay, LibMTL's softmax map, an absent task's stale y, the state round trip."""
import math

import torch

from mtl_platform.gradients.combine import call_weighting
from mtl_platform_plugins.weightings.moco import MoCo

F64 = torch.float64
J = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=F64)
PLAIN = dict(beta=0.5, beta_sigma=0.0, gamma=0.1, gamma_sigma=0.0, rho=0.0, normalize=False)


def test_moco_hand_steps():
    moco = MoCo(["a", "b"], **PLAIN)
    # y = 0 − ½(0 − J) = ½J, YYᵀ = diag(¼, 1); λ − 0.1·YYᵀλ = (0.4875, 0.45), sum 0.9375: + 0.03125 each
    # → λ = (0.51875, 0.48125), d = λ₁y₁ + λ₂y₂ = (0.5·0.51875, 1·0.48125)
    d, _ = call_weighting(moco, torch.ones(2, dtype=F64), J)
    assert torch.allclose(d, torch.tensor([0.259375, 0.48125], dtype=F64), rtol=1e-14)
    # y = ½J − ½(½J − J) = ¾J, YYᵀ = diag(0.5625, 2.25); λ − 0.1·YYᵀλ = (0.4895703125, 0.37296875),
    # sum 0.8625390625: + 0.06873046875 each → λ = (0.55830078125, 0.44169921875); d = (0.75 λ₁, 1.5 λ₂)
    d, _ = call_weighting(moco, torch.ones(2, dtype=F64), J)
    assert torch.allclose(moco.lam, torch.tensor([0.55830078125, 0.44169921875], dtype=F64), rtol=1e-14)
    assert torch.allclose(d, torch.tensor([0.4187255859375, 0.662548828125], dtype=F64), rtol=1e-14)
    fresh = MoCo(["a", "b"], **PLAIN)
    fresh.load_state_dict(moco.state_dict())
    assert torch.equal(call_weighting(fresh, torch.ones(2, dtype=F64), J)[0],
                       call_weighting(moco, torch.ones(2, dtype=F64), J)[0])


def test_moco_normalised_gradients_decaying_rates_and_softmax():
    # normalize: h_t = L_t g_t/‖g_t‖; g = (3, 4), (0, 5), L = (2, 3): h = (1.2, 1.6), (0, 3); β = 1: y = h
    moco = MoCo(["a", "b"], beta=1.0, beta_sigma=0.5, gamma=0.1, gamma_sigma=0.0)
    jac = torch.tensor([[3.0, 4.0], [0.0, 5.0]], dtype=F64)
    call_weighting(moco, torch.tensor([2.0, 3.0], dtype=F64), jac)
    assert torch.allclose(moco.y, torch.tensor([[1.2, 1.6], [0.0, 3.0]], dtype=F64), rtol=1e-14)
    # step 2, β₂ = 1/√2; g = (30, 40), (0, 50), L = (2, 1): h = (1.2, 1.6) (= y₁: unchanged), (0, 1);
    # y₂ ← (0, 3) − β₂((0, 3) − (0, 1)) = (0, 3 − 2β₂)
    call_weighting(moco, torch.tensor([2.0, 1.0], dtype=F64), 10 * jac)
    b = 1 / math.sqrt(2)
    expected = torch.tensor([[1.2, 1.6], [0.0, 3.0 - b * 2.0]], dtype=F64)
    assert torch.allclose(moco.y, expected, rtol=1e-14)
    # LibMTL's map: λ = softmax(λ₀ − γ YYᵀλ₀) with the first step of test_moco_hand_steps: (0.4875, 0.45)
    soft = MoCo(["a", "b"], simplex="softmax", **PLAIN)
    call_weighting(soft, torch.ones(2, dtype=F64), J)
    first = 1 / (1 + math.exp(-(0.4875 - 0.45)))
    assert torch.allclose(soft.lam, torch.tensor([first, 1 - first], dtype=F64), rtol=1e-14)


def test_moco_keeps_an_absent_tasks_tracked_gradient_out_of_the_update():
    moco = MoCo(["a", "b", "c"], **PLAIN)
    jac = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], dtype=F64)
    call_weighting(moco, torch.ones(3, dtype=F64), jac)
    stale = moco.y[2].clone()
    absent = jac.clone()
    absent[2] = 0
    present = torch.tensor([True, True, False])
    d, _ = call_weighting(moco, torch.tensor([1.0, 1.0, 0.0], dtype=F64), absent, present=present)
    assert torch.equal(moco.y[2], stale) and moco.lam[2] == 0
    assert torch.allclose(d, moco.lam[:2] @ moco.y[:2], rtol=1e-14)
