"""The encoder seam (DESIGN.md §3.1): a staged ``nn.Module`` whose forward composes its stages."""
from __future__ import annotations

from typing import Sequence

from torch import nn


class StagedEncoder(nn.Module):
    """An encoder made of ``stages`` (an ``nn.ModuleList`` of P−1 stages) with a known ``out_shape``.

    Architectures that branch or cross-connect between stages (cross-stitch, MTAN, CoNAL,
    DSMTL) call the stages one by one; everything else calls the encoder as a whole.
    ``stage_shapes`` gives each stage's output shape without the batch dimension (the last
    equals ``out_shape``), so modules inserted between stages can be built up front.
    """

    def __init__(self, stages: Sequence[nn.Module], out_shape: tuple[int, ...],
                 stage_shapes: Sequence[tuple[int, ...]] | None = None):
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.out_shape = tuple(out_shape)
        self.stage_shapes = tuple(tuple(s) for s in stage_shapes) if stage_shapes is not None else None
        if self.stage_shapes is not None and (len(self.stage_shapes) != len(self.stages)
                                              or self.stage_shapes[-1] != self.out_shape):
            raise ValueError(f"stage_shapes {self.stage_shapes} must give one shape per stage "
                             f"({len(self.stages)}) and end with out_shape {self.out_shape}")

    def forward(self, x):
        for stage in self.stages:
            x = stage(x)
        return x
