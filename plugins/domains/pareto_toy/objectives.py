r"""The two-objective toy problem of CAGrad (Liu et al., NeurIPS 2021, §5 and Appendix, the "toy
optimization example"; reused by Nash-MTL, Navon et al. 2022, §6.1), and its Pareto front.

With x = (x₁, x₂) ∈ ℝ², c₁(x) = max(tanh(x₂/2), 0) and c₂(x) = max(tanh(−x₂/2), 0):

    f_i(x) = c₁(x)·h_i(x) + c₂(x)·g_i(x),  i = 1, 2,
    h₁ = log(max(|½(−x₁ − 7) − tanh(−x₂)|, 5·10⁻⁶)) + 6,
    h₂ = log(max(|½(−x₁ + 3) − tanh(−x₂) + 2|, 5·10⁻⁶)) + 6,
    g₁ = ((x₁ − 7)² + 0.1·(x₂ + 8)²)/10 − 20,
    g₂ = ((x₁ + 7)² + 0.1·(x₂ + 8)²)/10 − 20.

Above the x₁ axis (x₂ > 0) only the log valleys h_i count, below it (x₂ < 0) only the
quadratics g_i; starting points above the axis must cross the flat-and-steep log region first,
which is what tells the gradient methods apart in the paper's figure.

**The Pareto front, derived.**

1. *Nothing above the axis is Pareto optimal.* There c₂ = 0 and 0 ≤ c₁ < 1, and
   h_i ≥ log(5·10⁻⁶) + 6 = −6.206, so f_i ≥ −6.206 for both i (f_i = 0 on the axis itself).
   The point (0, −8) below the axis has f₁ = f₂ = tanh(4)·(4.9 − 20) = −15.09 and so
   dominates every point with x₂ ≥ 0.

2. *Below the axis* write c = tanh(−x₂/2) ∈ (0, 1), q = (x₂ + 8)²/100, u₁ = (x₁ − 7)²/10,
   u₂ = (x₁ + 7)²/10, so f_i = c·(u_i + q − 20). Both objectives are smooth there, and a
   Pareto-optimal point satisfies the first-order (Fritz John) condition: for some
   w ∈ [0, 1], w∇f₁ + (1 − w)∇f₂ = 0.

   - The x₁ component: c·(w(x₁ − 7) + (1 − w)(x₁ + 7))/5 = 0, i.e. **x₁ = 14w − 7**
     (x₁ runs over [−7, 7], the segment between the two quadratics' centres). There
     u₁ = 19.6(1 − w)², u₂ = 19.6w² and w·u₁ + (1 − w)·u₂ = 19.6·w(1 − w).
   - The x₂ component, with dc/dx₂ = −(1 − c²)/2 and dq/dx₂ = (x₂ + 8)/50:
     **c·(x₂ + 8)/50 = ½(1 − c²)·(19.6·w(1 − w) + q − 20)**.
     The right-hand side is negative (19.6·w(1 − w) ≤ 4.9 and q is small there), so
     x₂ < −8; the left-hand side decreases and the right-hand side increases as x₂ goes
     down, so for each w there is exactly one root x₂*(w) in [−10, −8] (−8.434 at
     w ∈ {0, 1}, −8.355 at w = ½), found by bisection to machine precision.

   So the Pareto set is the curve {(14w − 7, x₂*(w)) : w ∈ [0, 1]} and the front is
   F(w) = (c·(19.6(1 − w)² + q − 20), c·(19.6w² + q − 20)) at x₂ = x₂*(w): from
   (−19.989, −0.398) at w = 1 (f₁ at its minimum) to (−0.398, −19.989) at w = 0, symmetric in
   f₁ ↔ f₂. Every point of the curve is non-dominated (the test checks it against a dense
   grid of the whole square [−10, 10]²), so the condition is also sufficient here.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

#: the floor inside the logarithms of the upper valleys
FLOOR = 5e-6


def objectives(x: Tensor) -> Tensor:
    """``(f₁, f₂)`` at each point of ``x`` (…, 2), stacked on the last dimension."""
    x1, x2 = x[..., 0], x[..., 1]
    c1 = torch.tanh(0.5 * x2).clamp_min(0)
    c2 = torch.tanh(-0.5 * x2).clamp_min(0)
    h1 = torch.log((0.5 * (-x1 - 7) - torch.tanh(-x2)).abs().clamp_min(FLOOR)) + 6
    h2 = torch.log((0.5 * (-x1 + 3) - torch.tanh(-x2) + 2).abs().clamp_min(FLOOR)) + 6
    g1 = ((x1 - 7) ** 2 + 0.1 * (x2 + 8) ** 2) / 10 - 20
    g2 = ((x1 + 7) ** 2 + 0.1 * (x2 + 8) ** 2) / 10 - 20
    return torch.stack([c1 * h1 + c2 * g1, c1 * h2 + c2 * g2], dim=-1)


def _stationarity(x2: float, w: float) -> float:
    """c·(x₂ + 8)/50 − ½(1 − c²)(19.6·w(1 − w) + q − 20), zero at x₂*(w) (see the module docstring)."""
    c = math.tanh(-x2 / 2)
    q = (x2 + 8) ** 2 / 100
    return c * (x2 + 8) / 50 - 0.5 * (1 - c * c) * (19.6 * w * (1 - w) + q - 20)


def pareto_x2(w: float) -> float:
    """x₂*(w), the one root of the stationarity condition in [−10, −8], by bisection."""
    lo, hi = -10.0, -8.0  # the condition is negative at lo, positive at hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _stationarity(mid, w) > 0:
            hi = mid
        else:
            lo = mid
        if hi - lo <= 1e-15:
            break
    return 0.5 * (lo + hi)


def pareto_set(n: int = 201) -> list[tuple[float, float]]:
    """``n`` points (x₁, x₂) of the Pareto set, w = 0 … 1."""
    return [(14 * w - 7, pareto_x2(w)) for w in (i / (n - 1) for i in range(n))]


def pareto_front(n: int = 201) -> list[tuple[float, float]]:
    """``n`` points (f₁, f₂) of the Pareto front, f₁ increasing (w = 1 … 0)."""
    points = torch.tensor(pareto_set(n), dtype=torch.float64)
    front = objectives(points).tolist()
    return sorted((tuple(p) for p in front), key=lambda p: p[0])
