"""Evaluating losses at perturbed parameters (DESIGN.md §3.5), shared by the closure methods
(SAM, PGA, MPGA): an exact snapshot and restore of parameters, BatchNorm running statistics
frozen during perturbed passes, block-wise normalised directions and per-task gradients of
given parameter blocks.

Restoring writes the saved values back into the *same* tensors (``copy_``), so optimizer state,
parameter groups and every other reference stay valid, and the values are bit-exact.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _NormBase

#: added to every norm in a denominator (spec gradients.md §3.3: "All denominators get +1e-12")
EPS = 1e-12


class Snapshot:
    """The values of ``params`` now; ``restore()`` writes them back in place, bit for bit."""

    def __init__(self, params: Sequence[Tensor]):
        self.params = list(params)
        self.saved = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def restore(self) -> None:
        for p, s in zip(self.params, self.saved):
            p.copy_(s)

    @contextmanager
    def shifted(self, deltas: Sequence[Tensor | None]) -> Iterator[None]:
        """Inside: each parameter at its saved value plus its delta (None: left as it is, which
        must be its saved value); after: the shifted ones restored, also when the block raises."""
        moved = [(p, s) for p, s, d in zip(self.params, self.saved, deltas) if d is not None]
        with torch.no_grad():
            for p, s, d in zip(self.params, self.saved, deltas):
                if d is not None:
                    torch.add(s, d.view_as(p).to(p.dtype), out=p.data)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, s in moved:
                    p.copy_(s)


@contextmanager
def frozen_running_stats(model: nn.Module) -> Iterator[None]:
    """Inside: forward passes as usual (a layer in training mode normalises with the batch's
    statistics, as in the first pass); after: every normalisation layer's running statistics
    (``running_mean``, ``running_var``, ``num_batches_tracked`` of BatchNorm, InstanceNorm, ...)
    are back to what they were on entry, bit for bit, also when the block raises. Saved and
    restored in place (small copies): switching ``track_running_stats`` off would not stop
    InstanceNorm, which updates its buffers whenever it has them."""
    saved = [(buf, buf.clone()) for m in model.modules() if isinstance(m, _NormBase)
             for buf in m.buffers(recurse=False)]
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, value in saved:
                buf.copy_(value)


def joint_norm(tensors: Sequence[Tensor]) -> Tensor:
    """‖(t_1, …, t_k)‖₂ of several tensors taken as one vector, without concatenating them (a 0-d
    tensor on the device; 0 for none)."""
    if not tensors:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in tensors]))


def direction(vector: Tensor, eps: float = EPS) -> Tensor:
    """``vector / (‖vector‖ + eps)``: the unit direction, zero for a zero vector."""
    return vector / (torch.linalg.vector_norm(vector) + eps)


def blocks_of(vector: Tensor, sizes: Sequence[int]) -> list[Tensor]:
    """Consecutive slices of the last dimension of ``vector``, one per size."""
    return list(torch.split(vector, list(sizes), dim=-1))


def per_block(flat: Tensor, params: Sequence[Tensor]) -> list[Tensor]:
    """A flat vector cut into views shaped like ``params``."""
    return [piece.view_as(p) for piece, p in zip(blocks_of(flat, [p.numel() for p in params]), params)]


def gradient_of(loss: Tensor, params: Sequence[Tensor], retain_graph: bool = False) -> Tensor:
    """∇ ``loss`` w.r.t. ``params``, flattened in their order (zeros for a parameter it does not
    reach): one backward pass. Per-task gradients of a parameter block are m such calls on the
    same graph (``retain_graph`` for all but the last), the CPU's fastest path
    (``gradients/jacobian.py``)."""
    if not params:
        return loss.new_zeros(0)
    if not loss.requires_grad:  # no parameter reaches this loss
        return torch.cat([torch.zeros_like(p).reshape(-1) for p in params])
    grads = torch.autograd.grad(loss, list(params), allow_unused=True, retain_graph=retain_graph)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, params)])


def trainable(params) -> list[Tensor]:
    """The parameters that require gradients, each once, in order."""
    seen, out = set(), []
    for p in params:
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out
