"""Per-sample generators from the domain's keys: every draw of a synthesis is a pure function
of a sample's key (an int64 the domain derives from (seed, epoch, index, k)), never of the
global RNG, the batch's composition or the device."""
from __future__ import annotations

import torch
from torch import Tensor


def generators(keys: Tensor, batch: int) -> list[torch.Generator]:
    """One CPU ``torch.Generator`` per sample, seeded with its key. ``keys``: (batch,) integers,
    on the CPU (they are read on the host: on an accelerator that would be a sync per batch)."""
    if keys.dim() != 1 or keys.shape[0] != batch:
        raise ValueError(f"keys must have shape ({batch},), one per image; got {tuple(keys.shape)}")
    if keys.is_floating_point() or keys.is_complex():
        raise ValueError(f"keys must be integers (int64 seeds), got {keys.dtype}")
    return [torch.Generator().manual_seed(int(key)) for key in keys.tolist()]


def uniform(gens: list[torch.Generator], low: float, high: float) -> Tensor:
    """(B,) float64 draws, uniform in [low, high), the i-th from ``gens[i]``."""
    u = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in gens]) if gens \
        else torch.zeros(0, dtype=torch.float64)
    return low + (high - low) * u


def check_images(images: Tensor, where: str) -> None:
    """A batch of float images (B, C, H, W)."""
    if images.dim() != 4 or not images.is_floating_point():
        raise ValueError(f"{where}: expected a float batch (B, C, H, W) in [0, 1], got "
                         f"{images.dtype} of shape {tuple(images.shape)}")
