"""Gradient reversal (Ganin & Lempitsky, ICML 2015, §3.2): identity forward, −λ·grad backward."""
from __future__ import annotations

import torch
from torch import Tensor


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, coeff):
        ctx.save_for_backward(coeff)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        (coeff,) = ctx.saved_tensors
        return -coeff * grad, None


def reverse_gradient(x: Tensor, coeff: Tensor | float) -> Tensor:
    """x unchanged; the gradient flowing back through it is multiplied by −coeff."""
    coeff = torch.as_tensor(coeff, dtype=x.dtype, device=x.device)
    return _Reverse.apply(x, coeff)


def grl_coefficient(progress: Tensor | float, gamma: float = 10.0, high: float = 1.0) -> Tensor:
    """DANN's schedule λ_p = high · (2 / (1 + exp(−γ p)) − 1), p ∈ [0, 1] the training
    progress (Ganin et al., JMLR 2016, §5.2.2; CDAN's code uses the same with γ = 10)."""
    p = torch.as_tensor(progress, dtype=torch.float32)
    return high * (2.0 / (1.0 + torch.exp(-gamma * p)) - 1.0)

