"""Distributed data-parallel runs on PyTorch's own runtime (DESIGN.md §3.7, issue 20).

A run launched by ``torchrun`` (or ``mtl train --nproc N``, which launches it) has one process
per rank; ``init_from_env`` joins the process group from torchrun's environment variables
(``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``) when
``WORLD_SIZE`` > 1, with ``gloo`` on the CPU and ``nccl`` on CUDA. With one process nothing
here does anything: ``world()`` is 1 and every helper returns its input.

What the platform knows of being distributed is this module, used in four places:
- data sharding (``shard``: a pure function of the global batch, rank and world size);
- the gradient engine, which reduces the losses and the per-task gradients (or the Gramian's
  pieces) before the weighting runs, so every rank computes the same answer;
- the trainer (evaluation results broadcast from rank 0, the non-finite flag, the epoch's mean
  losses and the world size in the checkpoint);
- file writes (``writes()``): only rank 0 writes (``atomic.atomic_write``, ``runs.append_jsonl``).

Collectives sum in place; a mean is that sum divided by the world size. All ranks call every
collective in the same order; no helper reads a tensor on the host.
"""
from __future__ import annotations

import os
from typing import Iterable, Sequence

import torch
from torch import Tensor

from .atomic import writes  # noqa: F401  (rank 0 writes; atomic.atomic_write and runs.append_jsonl ask it)
from .batches import Batches
from .errors import UserError


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def world() -> int:
    """The number of processes of this run (1 when not distributed)."""
    dist = _dist()
    return dist.get_world_size() if dist is not None else 1


def rank() -> int:
    dist = _dist()
    return dist.get_rank() if dist is not None else 0


def requested_world() -> int:
    """``WORLD_SIZE`` from the environment (torchrun sets it), 1 when absent."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise UserError(f"WORLD_SIZE: got {os.environ['WORLD_SIZE']!r}, expected a whole number") from None


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def init_from_env(device: str = "auto") -> int:
    """Join the process group torchrun describes (once); return the world size.

    ``device``: the config's ``train.device``; CUDA ranks use the GPU ``LOCAL_RANK``."""
    size = requested_world()
    if size <= 1 or _dist() is not None:
        return world()
    import torch.distributed as dist

    cuda = device in ("auto", "cuda") and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return world()


def close() -> None:
    """Leave the process group (at the end of a distributed run)."""
    dist = _dist()
    if dist is not None:
        dist.destroy_process_group()


# -- sharding ---------------------------------------------------------------------------------
def shard(chunks: Sequence[Tensor], rank_: int, world_: int) -> list[Tensor]:
    """This rank's contiguous slice of every global batch (index chunks of ``b × world``).

    Every rank must take the same number of samples per batch (the gradients are averaged as
    equal shares, and the random draws of all ranks stay in step), so a short last batch is
    cut to a multiple of ``world`` (at most ``world − 1`` samples of that epoch are left out)
    and dropped when it holds fewer than ``world`` samples. ``world`` 1: ``chunks`` unchanged."""
    if world_ <= 1:
        return list(chunks)
    out = []
    for chunk in chunks:
        per = len(chunk) // world_
        if per == 0:
            continue
        out.append(chunk[rank_ * per:(rank_ + 1) * per])
    return out


def evaluation_share(batches):
    """This rank's share of an evaluation's ``Batches``: every world-th batch from its rank (round
    robin), when there are at least as many batches as ranks, so that every rank holds a part of
    every metric sum and the sums add up across ranks (``sum_``); None otherwise (one process, or
    fewer batches than ranks: every rank then evaluates the whole split)."""
    size = world()
    if size <= 1 or not isinstance(batches, Batches) or len(batches.chunks) < size:
        return None
    return Batches(batches.dataset, batches.chunks[rank()::size], num_workers=batches.num_workers)


# -- collectives --------------------------------------------------------------------------------
def mean_(tensor: Tensor) -> Tensor:
    """All-reduce ``tensor`` in place to its mean over ranks; returns it."""
    dist = _dist()
    if dist is not None:
        dist.all_reduce(tensor)
        tensor.div_(dist.get_world_size())
    return tensor


def sum_(tensor: Tensor) -> Tensor:
    """All-reduce ``tensor`` in place to its sum over ranks; returns it."""
    dist = _dist()
    if dist is not None:
        dist.all_reduce(tensor)
    return tensor


def min_(tensor: Tensor) -> Tensor:
    dist = _dist()
    if dist is not None:
        dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return tensor


def gather(tensor: Tensor) -> Tensor:
    """Every rank's ``tensor`` stacked in rank order, (world, …) (at checkpoints, not per step)."""
    dist = _dist()
    if dist is None:
        return tensor[None]
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.stack(parts)


def average_gradients(params: Iterable[Tensor]) -> None:
    """Replace every parameter's ``.grad`` by its mean over ranks: one all-reduce of one flat
    buffer per dtype and device, no per-parameter call and no host read. Parameters without a
    gradient are left out: every rank runs the same code on the same model, so the same
    parameters have gradients on every rank."""
    dist = _dist()
    if dist is None:
        return
    groups: dict[tuple, list[Tensor]] = {}
    for p in params:
        if p.requires_grad and p.grad is not None:
            groups.setdefault((p.dtype, p.device), []).append(p)
    for ps in groups.values():
        flat = torch.cat([p.grad.reshape(-1) for p in ps])
        dist.all_reduce(flat)
        flat.div_(dist.get_world_size())
        offset = 0
        for p in ps:
            p.grad.copy_(flat[offset:offset + p.numel()].view_as(p.grad))
            offset += p.numel()


def broadcast_object(obj):
    """Rank 0's ``obj`` on every rank (a picklable value; once per epoch or run, not per step)."""
    dist = _dist()
    if dist is None:
        return obj
    box = [obj if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def on_rank0(make):
    """``make()`` run on rank 0 only (it may write files), its value given to every rank; a
    ``UserError`` it raises is raised on every rank, so no rank waits for the others forever."""
    if world() <= 1:
        return make()
    outcome = None
    if rank() == 0:
        try:
            outcome = ("value", make())
        except UserError as exc:
            outcome = ("error", str(exc))
    kind, value = broadcast_object(outcome)
    if kind == "error":
        raise UserError(value)
    return value


def broadcast_state(module: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank (once, when training starts)."""
    dist = _dist()
    if dist is None:
        return
    for value in module.state_dict().values():
        if isinstance(value, Tensor):
            dist.broadcast(value, src=0)


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Rank 0's buffers (batch-norm statistics) on every rank, so a sharded evaluation evaluates
    one model (what DDP's ``broadcast_buffers`` does before each forward)."""
    dist = _dist()
    if dist is None:
        return
    for value in module.buffers():
        dist.broadcast(value, src=0)


def barrier() -> None:
    dist = _dist()
    if dist is not None:
        dist.barrier()
