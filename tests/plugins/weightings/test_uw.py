"""UW (Kendall et al., CVPR 2018, Eq. 7–8): the weights and the auxiliary gradient by hand, and
the claimed effect, each task's loss scale learnt."""
import math

import torch

from mtl_platform_plugins.weightings.uw import UW


def test_uw_weights_and_auxiliary_gradient():
    uw = UW(["a", "b"], init=0.0)
    with torch.no_grad():
        uw.log_var.copy_(torch.tensor([0.0, math.log(4.0)]))
    assert torch.allclose(uw.weights(torch.ones(2)), torch.tensor([0.5, 0.125]))
    losses = torch.tensor([2.0, 4.0])
    uw.aux_loss(losses).backward()
    # d/ds [½ e^{-s} L + ½ s] = ½ (1 − e^{-s} L): s=0, L=2 → −0.5; s=log 4, L=4 → 0
    assert torch.allclose(uw.log_var.grad, torch.tensor([-0.5, 0.0]))


def test_uw_learns_each_tasks_loss_scale():
    """Kendall et al.: at the optimum σ_t² = L_t, so tasks with larger losses get smaller weights."""
    uw = UW(["small", "large"])
    opt = torch.optim.Adam(uw.parameters(), lr=0.05)
    losses = torch.tensor([0.2, 5.0])
    for _ in range(600):
        opt.zero_grad()
        uw.aux_loss(losses).backward()
        opt.step()
    assert torch.allclose(uw.log_var.exp(), losses, rtol=1e-2)
    w = uw.weights(losses)
    assert torch.allclose(w * losses, torch.full((2,), 0.5), rtol=1e-2)  # contributions equalised
