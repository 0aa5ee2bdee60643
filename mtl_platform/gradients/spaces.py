"""Gradient spaces: where the engine takes per-task gradients and how it applies the combined
one (DESIGN.md §3.2, §8). One interface, four spaces; the engine runs the same path for each:

    computed = space.compute(losses, needs)      # what the weighting declared
    answer = weighting.respond(losses, **computed)
    space.apply(answer, coefficients, scale)      # adds to .grad, like Tensor.backward

- ``JacobianSpace`` (``param`` mode, the model's shared parameters): per-task gradients of
  every trainable parameter into one m × P buffer kept across steps; the shared columns go to
  the weighting, the rest are combined with the loss coefficients. No further backward.
- ``AccumulatedSpace`` (``param`` mode, a weighting that needs only Gramians): the Gramian
  accumulated module by module (``accumulate.GramianAccumulator``), never m × P.
- ``ExplicitSpace`` (``params`` given, e.g. UDA's generator): per-task gradients over those
  parameters, one ordinary backward of Σ_t c_t L_t for everything else, and a correction of
  the space to the combined gradient.
- ``RepSpace`` (``rep`` mode): per-task gradients at the shared representation z only; one
  backward of Σ_t c_t L_t carries the combined gradient into the encoder through an extra
  gradient injected at z.

``losses`` are the true losses; with AMP, gradients are taken of ``losses * amp`` and divided
by ``amp`` before the weighting sees them, while what is applied stays scaled (``scale``).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ..contracts.weighting import Needs
from .accumulate import GramianAccumulator
from .combine import combined_gradient, form, gramian, needed

ANSWERS_LIKE_NEEDS = object()  # compute's default: read answers by the weighting's needs
from .jacobian import task_jacobian


def add_grad(param: Tensor, grad: Tensor, owned: bool = False) -> None:
    """``param.grad += grad`` as ``Tensor.backward`` accumulates. Where ``.grad`` is None it
    becomes ``grad`` itself when the caller ``owned`` it (a fresh tensor no one else holds:
    no copy), else a copy."""
    grad = grad.view_as(param)
    if grad.dtype != param.dtype:
        grad, owned = grad.to(param.dtype), True
    if param.grad is None:
        param.grad = grad if owned else grad.clone()
    else:
        param.grad.add_(grad)


def scatter(params: Sequence[Tensor], flat: Tensor, owned: bool = False) -> None:
    """Add consecutive slices of ``flat`` to the parameters' ``.grad`` (``owned``: see add_grad)."""
    offset = 0
    for p in params:
        n = p.numel()
        add_grad(p, flat[offset:offset + n], owned)
        offset += n


def combined_rows(rows: Tensor, jac: Tensor, block_sizes: Sequence[int] | None = None, needs=None) -> Tensor:
    """``combined_gradient`` of every answer row, (s, P): task-weight rows in one product that
    reads the Jacobian once; other forms row by row."""
    m, p = jac.shape
    if rows.dim() == 2 and form(rows[0], m, p, len(block_sizes or [p]), needs) == "weights":
        return rows.to(jac.dtype) @ jac
    return torch.stack([combined_gradient(row, jac, block_sizes, needs) for row in rows])


def spread(into: dict, params: Sequence[Tensor], flat: Tensor) -> None:
    """``into[id(p)]``: the slice of ``flat`` that belongs to ``p``, shaped and typed like it."""
    offset = 0
    for p in params:
        n = p.numel()
        into[id(p)] = flat[offset:offset + n].view_as(p).to(p.dtype)
        offset += n


def task_gradients(losses: Tensor, amp, inputs, out=None, terms=None) -> Tensor:
    """Per-task gradients of the true losses (taken of the AMP-scaled ones, then unscaled);
    ``terms``: the scalars ``losses`` was stacked from (``jacobian.task_jacobian``)."""
    if amp is None:
        return task_jacobian(losses, inputs, batched=None, out=out, terms=terms)
    scaled = None if terms is None else [t * amp for t in terms]
    jac = task_jacobian(losses * amp, inputs, batched=None, out=out, terms=scaled)
    return jac.div_(amp)


class GradientSpace:
    """Computes what a weighting needs over one set of directions and applies its answer."""

    #: the m × P Jacobian over the space (None where it is never formed)
    jac: Tensor | None = None
    #: keep the autograd graph in ``apply``, so the space can apply several answers of one
    #: computation (the sequential update); the accumulated space cannot and is never asked to
    retain: bool = False
    #: a distributed run's reduction of the per-task gradients over ranks, in place, before
    #: anything is computed from them (``GradientEngine._distribute``); None in one process
    reduce = None
    #: whether ``apply`` backpropagates this rank's own losses, so ``.grad`` then holds a
    #: per-rank gradient a distributed run must average (False: everything applied is reduced)
    local_backward: bool = True

    def __init__(self, precision: str):
        self.precision = precision
        self.computed: dict = {}

    def compute(self, losses: Tensor, amp, needs: Needs, terms=None, answers=ANSWERS_LIKE_NEEDS) -> dict:
        """What ``needs`` asks for, from the loss vector ``losses`` (``terms``: the scalars it was
        stacked from, so each task's backward pass visits only its own graph). ``answers``: what
        ``combine.form`` is told when it reads the answer (``combine.answer_hint``; by default
        ``needs``)."""
        raise NotImplementedError

    def apply(self, answer: Tensor, coeff: Tensor, scale) -> None:
        raise NotImplementedError

    def size(self) -> tuple[int, int]:
        """(P, number of parameter blocks) of the space."""
        raise NotImplementedError

    def step_gradients(self, rows: Tensor, coeffs: Tensor, scale, params: Sequence[Tensor],
                       uniform: bool = False) -> list[list]:
        """The gradient of every parameter in ``params`` for each answer row (the sequential
        update), all from this one computation: row k's combination on the space, ``coeffs[k]``
        of the task losses elsewhere, each times ``scale``; ``uniform``: every row has the same
        ``coeffs`` (known to the caller, so nothing is read from the device). Generic form: one
        ``apply`` per row (a backward each, the graph kept between them); the Jacobian spaces
        override it."""
        steps = []
        for k, (row, coeff) in enumerate(zip(rows, coeffs)):
            for q in params:
                q.grad = None
            self.retain = k < len(rows) - 1
            self.apply(row, coeff, scale)
            steps.append([q.grad for q in params])
        return steps

    def gram(self) -> Tensor:
        """The task Gramian over the space (for diagnostics)."""
        if "gram" in self.computed:
            return self.computed["gram"]
        if "block_grams" in self.computed:
            return self.computed["block_grams"].sum(0)
        return gramian(self.jac, self.precision)


class JacobianSpace(GradientSpace):
    local_backward = False  # every trainable parameter's gradient comes from the reduced Jacobian

    def __init__(self, shared: Sequence[Tensor], others: Sequence[Tensor], block_sizes: Sequence[int],
                 precision: str, buffer_owner):
        super().__init__(precision)
        self.shared, self.others, self.block_sizes = list(shared), list(others), list(block_sizes)
        self.n = sum(p.numel() for p in self.shared)
        self.owner = buffer_owner  # keeps the m × P buffer across steps

    def size(self):
        return self.n, len(self.block_sizes)

    def compute(self, losses, amp, needs, terms=None, answers=ANSWERS_LIKE_NEEDS):
        self.needs = needs if answers is ANSWERS_LIKE_NEEDS else answers
        m = losses.shape[0]
        inputs = self.shared + self.others
        total = sum(p.numel() for p in inputs)
        dtype = inputs[0].dtype
        buffer = self.owner.jacobian_buffer
        if buffer is None or buffer.shape != (m, total) or buffer.dtype != dtype or buffer.device != losses.device:
            buffer = self.owner.jacobian_buffer = torch.empty(m, total, dtype=dtype, device=losses.device)
        full = task_gradients(losses, amp, inputs, out=buffer, terms=terms)
        if self.reduce is not None:
            self.reduce(full)
        self.jac, self.rest = full[:, :self.n], full[:, self.n:]
        self.computed = needed(needs, self.jac, self.block_sizes, self.precision)
        return self.computed

    def apply(self, answer, coeff, scale):
        combined = combined_gradient(answer, self.jac, self.block_sizes, self.needs)
        scatter(self.shared, combined * scale, owned=True)
        scatter(self.others, (coeff.to(self.rest.dtype) @ self.rest) * scale, owned=True)

    def step_gradients(self, rows, coeffs, scale, params, uniform=False):
        """Every row from the buffer itself: no backward pass at all."""
        combined = combined_rows(rows, self.jac, self.block_sizes, self.needs) * scale
        rest = (coeffs.to(self.rest.dtype) @ self.rest) * scale
        steps = []
        for k in range(len(rows)):
            flat = {}
            spread(flat, self.shared, combined[k])
            spread(flat, self.others, rest[k])
            steps.append([flat.get(id(q)) for q in params])
        return steps


class AccumulatedSpace(GradientSpace):
    def __init__(self, accumulator: GramianAccumulator, others: Sequence[Tensor], precision: str,
                 block_sizes: Sequence[int]):
        super().__init__(precision)
        self.accumulator, self.others, self.block_sizes = accumulator, list(others), list(block_sizes)

    def size(self):
        return sum(p.numel() for p in self.accumulator.space), self.accumulator.n_blocks

    def compute(self, losses, amp, needs, terms=None, answers=ANSWERS_LIKE_NEEDS):
        self.needs = needs if answers is ANSWERS_LIKE_NEEDS else answers
        grams, self.state = self.accumulator.compute(losses, self.others, self.precision, amp, terms)
        self.computed = {"gram": grams[0]} if needs is Needs.GRAMIAN else {"block_grams": grams}
        return self.computed

    def apply(self, answer, coeff, scale):
        blocks = self.accumulator.n_blocks
        weights = answer[None].expand(blocks, -1) if answer.dim() == 1 else answer
        self.accumulator.apply(self.state, weights, coeff, scale, add_grad)
        self.state = None


class ExplicitSpace(GradientSpace):
    def __init__(self, params: Sequence[Tensor], precision: str, others: Sequence[Tensor] | None = None):
        super().__init__(precision)
        self.params = [p for p in params if p.requires_grad]
        # the trainable parameters outside the space (None: unknown); none at all → no backward
        self.others = None if others is None else list(others)
        self.local_backward = not (self.others is not None and not self.others)

    def size(self):
        return sum(p.numel() for p in self.params), 1

    def compute(self, losses, amp, needs, terms=None, answers=ANSWERS_LIKE_NEEDS):
        self.needs = needs if answers is ANSWERS_LIKE_NEEDS else answers
        self.losses = losses
        self.amp = amp
        self.jac = task_gradients(losses, amp, self.params, terms=terms)
        if self.reduce is not None:
            self.reduce(self.jac)
        self.computed = needed(needs, self.jac, precision=self.precision)
        return self.computed

    def apply(self, answer, coeff, scale):
        combined = combined_gradient(answer, self.jac, needs=self.needs)
        if self.others is not None and not self.others:  # the space is every trainable parameter
            scatter(self.params, combined * scale, owned=True)
            return
        (coeff * self.losses * scale).sum().backward(retain_graph=self.retain)
        scatter(self.params, (combined - coeff.to(self.jac.dtype) @ self.jac) * scale)

    def step_gradients(self, rows, coeffs, scale, params, uniform=False):
        """The space's part of every row from its Jacobian; the parameters outside it get their
        share of ``coeffs``-weighted losses from one backward pass, when every row weights the
        losses alike (``uniform``: a gradient method, 1/s each); otherwise the generic form."""
        if not uniform:
            return super().step_gradients(rows, coeffs, scale, params)
        inside = {id(q) for q in self.params}
        outside = [q for q in params if id(q) not in inside]
        shared = {}
        if outside:
            grads = torch.autograd.grad((coeffs[0] * self.losses * scale).sum(), outside, allow_unused=True)
            shared = {id(q): g for q, g in zip(outside, grads) if g is not None}
        combined = combined_rows(rows, self.jac, needs=self.needs) * scale
        steps = []
        for k in range(len(rows)):
            flat = {key: g.clone() for key, g in shared.items()}  # each step owns its tensors (AMP unscales in place)
            spread(flat, self.params, combined[k])
            steps.append([flat.get(id(q)) for q in params])
        return steps


class RepSpace(GradientSpace):
    """In a distributed run each rank holds the rows of z of its own samples: disjoint
    coordinates of the global representation, so the global Gramian is the sum of the ranks'
    pieces J_r J_rᵀ (scaled by 1/world², the losses being means over ranks). ``reduce_gramian``
    sums them; each rank then applies the answer to its own rows, and the engine averages the
    encoder's gradients. The Jacobian over z is never gathered."""

    #: a distributed run's reduction of this rank's Gramian piece to the global Gramian (in place)
    reduce_gramian = None

    def __init__(self, rep: Tensor, precision: str):
        super().__init__(precision)
        self.rep = rep

    def size(self):
        return self.rep.numel(), 1

    def compute(self, losses, amp, needs, terms=None, answers=ANSWERS_LIKE_NEEDS):
        self.needs = needs if answers is ANSWERS_LIKE_NEEDS else answers
        self.losses = losses
        self.jac = task_gradients(losses, amp, [self.rep], terms=terms)
        self.computed = needed(needs, self.jac, precision=self.precision)
        if self.reduce_gramian is not None:
            self.reduce_gramian(self.computed["gram"])
        return self.computed

    def apply(self, answer, coeff, scale):
        combined = combined_gradient(answer, self.jac, needs=self.needs)
        injected = ((combined - coeff @ self.jac) * scale).view_as(self.rep)
        torch.autograd.backward([(coeff * self.losses * scale).sum(), self.rep], [None, injected],
                                retain_graph=self.retain)
