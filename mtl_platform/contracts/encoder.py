"""The encoder seam (DESIGN.md §3.1): a staged ``nn.Module`` whose forward composes its stages."""
from __future__ import annotations

from typing import Sequence

from torch import nn


class StagedEncoder(nn.Module):
    """An encoder made of ``stages`` (an ``nn.ModuleList`` of P−1 stages) with a known ``out_shape``.

    Architectures that branch or cross-connect between stages (cross-stitch, CoNAL, DSMTL)
    call the stages one by one; everything else calls the encoder as a whole.
    """

    def __init__(self, stages: Sequence[nn.Module], out_shape: tuple[int, ...]):
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.out_shape = tuple(out_shape)

    def forward(self, x):
        for stage in self.stages:
            x = stage(x)
        return x
