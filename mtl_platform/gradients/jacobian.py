"""Per-task gradients as one (m × P) Jacobian, by batched vector–Jacobian products
(DESIGN.md §8): one ``autograd.grad`` call with ``is_grads_batched=True`` backpropagates
all m rows of the identity at once (vmap over the backward). Where an operator has no
batching rule, it falls back to a loop of m backward passes. The parameter order is the
order of ``inputs``; a parameter a task does not reach gets zeros. Nothing leaves the device.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

_BATCHING_FAILED: set[str] = set()


def _flatten(grads: Sequence[Tensor], lead: int) -> Tensor:
    return torch.cat([g.reshape(lead, -1) for g in grads], dim=1)


def task_jacobian(losses: Tensor, inputs: Sequence[Tensor], *, retain_graph: bool = True,
                  batched: bool = True) -> Tensor:
    """The Jacobian of the loss vector (m,) w.r.t. ``inputs``, flattened to (m, Σ numel)."""
    m = losses.shape[0]
    inputs = list(inputs)
    if batched and m > 1:
        eye = torch.eye(m, dtype=losses.dtype, device=losses.device)
        try:
            grads = torch.autograd.grad(losses, inputs, grad_outputs=eye, retain_graph=True,
                                        is_grads_batched=True, allow_unused=True, materialize_grads=True)
            return _flatten(grads, m)
        except RuntimeError as exc:  # an operator without a batching rule
            key = str(exc).splitlines()[0][:200]
            if key not in _BATCHING_FAILED:
                _BATCHING_FAILED.add(key)
                import warnings

                warnings.warn(f"batched per-task gradients unavailable ({key}); using a loop of "
                              f"{m} backward passes", RuntimeWarning, stacklevel=2)
    rows = []
    for i in range(m):
        grads = torch.autograd.grad(losses[i], inputs, retain_graph=retain_graph or i < m - 1,
                                    allow_unused=True, materialize_grads=True)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(rows)
