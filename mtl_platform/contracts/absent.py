"""Tasks absent from a batch (partial labels): what a weighting sees and how its answer is applied.

A task with no labelled sample in a batch has loss 0 and a zero gradient row. Every
weighting must already give a finite answer on a zero row (the property suite's hard
Jacobians include one), and for most methods the zero row is exactly neutral: their update
with it equals their update over the present tasks alone (equal weighting, PCGrad's and
GradVac's projections, GH's conflicts, IMTL, Nash-MTL, Aligned-MTL, ...). Some are not: MGDA's
minimum-norm point of a hull that contains 0 is 0 (no update at all), CAGrad's average
gradient shrinks by |present|/m. ``Weighting.absent_tasks`` therefore chooses one of three
treatments:

- ``"zero"`` (the default): the weighting sees the zero row and the zero loss as they are;
- ``"substitute"``: the weighting sees every absent task replaced by the mean of the present
  ones, ``J' = A J``, ``L' = A L`` (so ``G' = A G Aᵀ``), where row t of the m × m matrix A is
  e_t for a present task and ``present / |present|`` for an absent one. Its answer w' is
  applied to the real tasks as ``Aᵀ w'`` (per-block weights ``W' A``; an aggregated gradient
  as it is): the same update, since ``w'ᵀ J' = (Aᵀ w')ᵀ J``. The mean of the present gradients
  lies in their convex hull, so MGDA's minimum-norm point and CAGrad's average gradient are
  exactly those of the present tasks;
- ``"own"``: the weighting is given ``present`` (``weights(..., present=...)`` and
  ``aux_loss(..., present=...)``) and handles absent tasks itself (UPGrad averages over the
  present tasks' projections, UW and GradNorm leave absent tasks out of their auxiliary loss,
  FAMO out of its weights and logit update).

With ``"zero"`` and ``"substitute"`` the applied weight of an absent task is set to 0 (its
gradient is zero: the weight changes nothing but the log), and a batch with no task present
gets a zero answer. Everything here is tensor arithmetic on the device: no host read of
``present``.
"""
from __future__ import annotations

import torch
from torch import Tensor

TREATMENTS = ("substitute", "zero", "own")


def substitution(present: Tensor, dtype: torch.dtype) -> Tensor:
    """The m × m matrix A: row t is e_t for a present task, the mean of the present tasks' unit
    vectors for an absent one (all zero when no task is present)."""
    p = present.to(dtype)
    mean = p / p.sum().clamp_min(1)
    eye = torch.eye(len(p), dtype=dtype, device=present.device)
    return torch.where(present[:, None], eye, mean[None, :])


def substitute(a: Tensor, losses: Tensor, computed: dict) -> tuple[Tensor, dict]:
    """The weighting's inputs with absent tasks replaced: ``A L`` and, by key, ``A G Aᵀ``
    (``gram``), ``A G_b Aᵀ`` per block (``block_grams``), ``A J`` (``jacobian``)."""
    out = {}
    for key, value in computed.items():
        if key == "gram":
            ak = a.to(value.dtype)
            out[key] = ak @ value @ ak.T
        elif key == "block_grams":
            ak = a.to(value.dtype)
            out[key] = ak @ value @ ak.T
        elif key == "jacobian":
            out[key] = a.to(value.dtype) @ value
        else:
            out[key] = value
    return a.to(losses.dtype) @ losses, out


def fold(answer: Tensor, a: Tensor | None, present: Tensor, num_tasks: int) -> Tensor:
    """The answer for the real tasks: ``Aᵀ w`` for task weights, ``W A`` for per-block weights
    (``a`` None: no substitution), absent tasks' weights set to 0; an aggregated gradient is
    kept, or zeroed when no task is present. ``torch.where`` drops a NaN of an absent entry."""
    if answer.dim() == 1 and answer.shape[0] == num_tasks:  # task weights
        folded = a.to(answer.dtype).T @ answer if a is not None else answer
        return torch.where(present, folded, torch.zeros_like(folded))
    if answer.dim() == 2 and answer.shape[1] == num_tasks:  # per-block weights
        folded = answer @ a.to(answer.dtype) if a is not None else answer
        return torch.where(present[None, :], folded, torch.zeros_like(folded))
    return torch.where(present.any(), answer, torch.zeros_like(answer))
