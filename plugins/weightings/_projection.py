"""Private helpers shared by the Gramian-based seed weightings (GH, GH++, PCGrad, equilibrium, CAGrad).

Everything works on *coefficient rows*: a vector ``v = c @ J`` in the span of the task
gradients is stored as its coefficients ``c`` (m,), so ``u·v = c_u G c_vᵀ`` needs only the
Gramian ``G = J Jᵀ``. All functions are pure torch, run on the Gramian's device, and contain no
Python branch on a tensor value.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor


def symmetric(gram: Tensor) -> Tensor:
    """``(G + Gᵀ)/2``: an engine that accumulates G block by block may leave it slightly asymmetric."""
    return 0.5 * (gram + gram.transpose(-1, -2))


def tiny(like: Tensor) -> float:
    """The smallest positive normal number of ``like``'s dtype (a 0/0 guard, not a tolerance)."""
    return torch.finfo(like.dtype).tiny


def scale_of(gram: Tensor) -> Tensor:
    """The mean squared task-gradient norm, ``trace(G)/m``, floored away from zero (a 0-d tensor)."""
    return torch.diagonal(gram).mean().clamp_min(tiny(gram))


def other_tasks(m: int, shuffle: bool, device) -> Tensor:
    """(m, m−1) long tensor: row i lists every task j ≠ i, in index order or in a random order.

    The random order is drawn independently for every row from torch's global generator
    (``torch.rand`` on ``device``), so checkpoints that save the RNG state reproduce it.
    """
    if m < 2:
        return torch.zeros(m, 0, dtype=torch.long, device=device)
    if shuffle:
        keys = torch.rand(m, m, device=device)
    else:
        keys = torch.arange(m, device=device, dtype=torch.float32).expand(m, m).clone()
    keys.fill_diagonal_(float("inf"))  # a task never comes before the others against itself
    return keys.argsort(dim=1)[:, : m - 1]


def sequential_projection(start: Tensor, targets: Tensor, gram: Tensor, order: Tensor,
                          fires: Callable[[Tensor, Tensor, Tensor], Tensor], min_sq: Tensor | float) -> Tensor:
    """Project every row of ``start``, one target after another, onto the normal plane of the target.

    ``start`` (m, m): coefficient rows of the vectors v_i to adjust; ``targets`` (n, m): coefficient
    rows of the reference vectors t_j (never modified); ``order`` (m, steps): row i lists which
    targets v_i meets, in order. At each step, with the *current* v_i and the target t_j,
    ``fires(v_i·t_j, ‖v_i‖², ‖t_j‖²)`` decides (a bool per row) whether
    ``v_i ← v_i − (v_i·t_j / ‖t_j‖²) t_j``. Targets with ``‖t_j‖² ≤ min_sq`` are skipped.
    All rows advance together: m−1 vectorised steps of O(m²) work each.
    """
    coeffs = start.clone()
    targets_gram = targets @ gram                                  # row j: t_j G
    target_sq = (targets_gram * targets).sum(1)                    # ‖t_j‖²
    for step in range(order.shape[1]):
        j = order[:, step]
        dot = (coeffs * targets_gram[j]).sum(1)                    # v_i · t_j
        own_sq = ((coeffs @ gram) * coeffs).sum(1).clamp_min(0)   # ‖v_i‖²
        sq_j = target_sq[j]
        valid = sq_j > min_sq
        project = fires(dot, own_sq, sq_j) & valid
        ratio = torch.where(project, dot / torch.where(valid, sq_j, torch.ones_like(sq_j)),
                            torch.zeros_like(dot))
        coeffs = coeffs - ratio[:, None] * targets[j]
    return coeffs


def project_simplex(points: Tensor, metric: Tensor | None = None) -> Tensor:
    """Batched projection of the rows of ``points`` (k, m) onto the probability simplex.

    With ``metric`` d (m,) > 0 the projection is in the weighted norm ``Σ_i d_i (x_i − y_i)²``:
    ``x_i = max(0, y_i − ν/d_i)`` with ν chosen so that ``Σ x = 1`` (found by sorting the
    breakpoints ``y_i d_i``); ``metric=None`` is the Euclidean projection. Pure tensor code.
    """
    if metric is None:
        metric = torch.ones(points.shape[-1], dtype=points.dtype, device=points.device)
    inv = (1.0 / metric).expand_as(points)
    keys = points * metric
    order = keys.argsort(dim=-1, descending=True)
    sorted_keys = keys.gather(-1, order)
    cum_y = points.gather(-1, order).cumsum(-1)
    cum_inv = inv.gather(-1, order).cumsum(-1)
    nu = (cum_y - 1.0) / cum_inv                                   # ν if the top-k are the support
    support = sorted_keys > nu                                     # true for k = 1..K*, then false
    count = support.sum(-1, keepdim=True).clamp_min(1)
    nu_star = nu.gather(-1, count - 1)
    return (points - nu_star * inv).clamp_min(0)
