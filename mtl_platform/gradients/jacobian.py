"""Per-task gradients as one (m × P) Jacobian (DESIGN.md §8).

Two ways, the same numbers: a loop of m ``autograd.grad`` calls (one backward pass per task,
the floor of any per-task method), or one batched vector–Jacobian product
(``is_grads_batched=True``: vmap over the backward). On this CPU the loop measured faster
(ResNet-18, one thread, both writing into a kept buffer: 216 against 241 ms at m = 2, 713
against 886 at m = 8, 1294 against 1671 at m = 16); on CUDA the batched VJP is expected to win
(not measured here). ``batched=None`` picks by device: the loop on the CPU. Where an operator
has no batching rule, the batched form falls back to the loop.

Rows are written straight into ``out`` when given. The engine keeps one buffer across steps:
concatenating fresh per-task gradients into a new m × P tensor each step measured 293 ms at
m = 2 against 216 ms into the kept buffer, in runs where the bare backward passes took 173–177
ms. The parameter order is the order of ``inputs``; a parameter a task does not reach gets
zeros. Nothing leaves the device.

The loop differentiates each task's own loss term when the caller passes the ``terms`` the
loss vector was stacked from: through the stacked vector, every task's backward pass would also
visit every other task's graph with zero gradients (a StackBackward sends zeros, not nothing),
which costs m times the floor wherever the tasks' graphs are disjoint — MT-SAC's per-task
batches (issue 19): 361 ms against 36 ms for the ten critic gradients of an MT10 update.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import torch
from torch import Tensor

_BATCHING_FAILED: set[str] = set()


def _flatten(grads: Sequence[Tensor], lead: int) -> Tensor:
    return torch.cat([g.reshape(lead, -1) for g in grads], dim=1)


def _write_row(row: Tensor, grads: Sequence[Tensor | None], sizes: Sequence[int]) -> None:
    offset = 0
    for g, n in zip(grads, sizes):
        if g is None:
            row[offset:offset + n].zero_()
        else:
            row[offset:offset + n].copy_(g.reshape(-1))
        offset += n


def task_jacobian(losses: Tensor, inputs: Sequence[Tensor], *, retain_graph: bool = True,
                  batched: bool | None = True, out: Tensor | None = None,
                  terms: Sequence[Tensor] | None = None) -> Tensor:
    """The Jacobian of the loss vector (m,) w.r.t. ``inputs``, flattened to (m, Σ numel).

    ``batched``: True (one batched VJP), False (a loop of m backward passes) or None (the
    faster for the device: the loop on the CPU). ``out``: an (m, Σ numel) buffer to fill.
    ``terms``: the m scalars ``losses`` was stacked from (the loop then differentiates each alone).
    """
    m = losses.shape[0]
    inputs = list(inputs)
    if batched is None:
        batched = losses.device.type != "cpu"
    if batched and m > 1:
        eye = torch.eye(m, dtype=losses.dtype, device=losses.device)
        try:
            grads = torch.autograd.grad(losses, inputs, grad_outputs=eye, retain_graph=True,
                                        is_grads_batched=True, allow_unused=True, materialize_grads=True)
            if out is None:
                return _flatten(grads, m)
            offset = 0
            for g in grads:
                n = g[0].numel()
                out[:, offset:offset + n].copy_(g.reshape(m, -1))
                offset += n
            return out
        except RuntimeError as exc:  # an operator without a batching rule
            key = str(exc).splitlines()[0][:200]
            if key not in _BATCHING_FAILED:
                _BATCHING_FAILED.add(key)
                warnings.warn(f"batched per-task gradients unavailable ({key}); using a loop of "
                              f"{m} backward passes", RuntimeWarning, stacklevel=2)
    sizes = [p.numel() for p in inputs]
    if out is None:
        out = torch.empty(m, sum(sizes), dtype=inputs[0].dtype if inputs else losses.dtype,
                          device=losses.device)
    for i in range(m):
        grads = torch.autograd.grad(losses[i] if terms is None else terms[i], inputs,
                                    retain_graph=retain_graph or i < m - 1, allow_unused=True)
        _write_row(out[i], grads, sizes)
    return out
