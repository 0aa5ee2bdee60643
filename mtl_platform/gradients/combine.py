"""From a task Jacobian to what a weighting needs, and from its answer to one gradient
(DESIGN.md §3.2). Pure tensor functions: the engine and the tests share them.

A weighting answers in one of three forms:
- task weights ``w`` (m,): the combined gradient is ``wᵀ J``;
- per-block weights ``W`` (blocks × m): block b gets ``W[b]ᵀ J_b``;
- one aggregated gradient (P,), only for weightings that need the Jacobian.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ..contracts.weighting import Needs, working_dtype

# Elements per float64 chunk of a Gramian (2 MiB): small enough to stay in cache, so converting
# and multiplying a chunk costs what the float32 product of those columns costs.
_CHUNK_ELEMENTS = 1 << 18


def block_slices(sizes: Sequence[int]) -> list[slice]:
    out, start = [], 0
    for n in sizes:
        out.append(slice(start, start + n))
        start += n
    return out


GRAMIAN_DTYPES = ("float64", "native")


def gramian(jacobian: Tensor, precision: str = "float64") -> Tensor:
    """``J Jᵀ`` accumulated and returned in float64 (float32 on MPS), whatever J's dtype;
    ``precision="native"``: the plain product in J's own dtype.

    A Gramian rounded to float32 is not positive semidefinite where it matters most: for
    near-opposite or near-parallel gradients its entries carry errors of about 1e-7·‖g_i‖‖g_j‖,
    enough to give wᵀGw < 0 and to turn MGDA's and UPGrad's "no conflict" into a conflict of
    that size. Products of float32 numbers are exact in float64, so accumulating in float64
    makes G as accurate as the gradients themselves. The columns are converted in chunks of
    2 MiB into one reused buffer, so the extra memory does not grow with P and, on the CPU, the
    whole costs about what the float32 product costs (``bench/gramian_precision.py``);
    ``native`` keeps the gradients' dtype (``gradients.gramian_dtype``).
    """
    dtype = working_dtype(jacobian)
    if precision == "native" or jacobian.dtype == dtype:
        return jacobian @ jacobian.T
    m, p = jacobian.shape
    chunk = min(p, max(1, _CHUNK_ELEMENTS // max(m, 1)))
    gram = torch.zeros(m, m, dtype=dtype, device=jacobian.device)
    buffer = torch.empty(m, chunk, dtype=dtype, device=jacobian.device)  # reused: no allocation per chunk
    for start in range(0, p, chunk):
        part = buffer[:, :min(chunk, p - start)]
        part.copy_(jacobian[:, start:start + chunk])
        gram.addmm_(part, part.T)
    return gram


def needed(needs: Needs, jacobian: Tensor, block_sizes: Sequence[int] | None = None,
           precision: str = "float64") -> dict[str, Tensor]:
    """What a weighting declared, computed from the (m × P) Jacobian; Gramians as ``gramian`` makes them."""
    if needs is Needs.LOSSES:
        return {}
    if needs is Needs.GRAMIAN:
        return {"gram": gramian(jacobian, precision)}
    if needs is Needs.JACOBIAN:
        return {"jacobian": jacobian}
    if needs is Needs.BLOCK_GRAMIANS:
        sizes = block_sizes or [jacobian.shape[1]]
        return {"block_grams": torch.stack([gramian(jacobian[:, s], precision) for s in block_slices(sizes)])}
    raise ValueError(f"unknown needs {needs!r}")


def answer_hint(weighting) -> Needs | None:
    """What ``form`` is told of ``weighting``'s answers: its ``needs``, except for a loss weighting
    (``scales_heads``), whose answer is always task weights — so ExcessMTL's (m,) answer is not
    read as a gradient when the space happens to have P = m coordinates."""
    return None if weighting.scales_heads else weighting.needs


def form(out: Tensor, m: int, p: int, blocks: int, needs: Needs | None = None) -> str:
    """Which of the three forms ``out`` is: 'weights', 'block_weights' or 'vector'
    (a Jacobian gradient method's (P,) answer is a vector even when P happens to equal m;
    ``needs``: ``answer_hint`` of the weighting)."""
    if out.dim() == 1 and out.shape[0] == p and needs is Needs.JACOBIAN:
        return "vector"
    if out.dim() == 1 and out.shape[0] == m:
        return "weights"
    if out.dim() == 2 and out.shape == (blocks, m):
        return "block_weights"
    if out.dim() == 1 and out.shape[0] == p:
        return "vector"
    raise ValueError(f"a weighting returned shape {tuple(out.shape)}; expected ({m},) task weights, "
                     f"({blocks}, {m}) per-block weights or a ({p},) gradient")


def combined_gradient(out: Tensor, jacobian: Tensor, block_sizes: Sequence[int] | None = None,
                      needs: Needs | None = None) -> Tensor:
    """The shared-space gradient (P,) a weighting's answer stands for."""
    m, p = jacobian.shape
    sizes = list(block_sizes or [p])
    kind = form(out, m, p, len(sizes), needs)
    if kind == "weights":
        return out.to(jacobian.dtype) @ jacobian
    if kind == "block_weights":
        return torch.cat([out[b].to(jacobian.dtype) @ jacobian[:, s] for b, s in enumerate(block_slices(sizes))])
    return out.to(jacobian.dtype)


def call_weighting(weighting, losses: Tensor, jacobian: Tensor, block_sizes: Sequence[int] | None = None,
                   present: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Run ``weighting`` on an explicit Jacobian: (its answer, the combined gradient); ``present``
    as the engine passes it (partial labels).

    The reference semantics of the engine, used by the property tests.
    """
    computed = needed(weighting.needs, jacobian, block_sizes)
    out = weighting.respond(losses, present=present, **computed).detach()
    return out, combined_gradient(out, jacobian, block_sizes, answer_hint(weighting))
