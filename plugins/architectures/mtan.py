"""Multi-Task Attention Network (Liu, Johns, Davison, CVPR 2019, §3, Fig. 2)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl_platform.contracts import Architecture
from mtl_platform.errors import UserError
from mtl_platform.hookspecs import hookimpl


def _pointwise(c_in: int, c_out: int, rank: int) -> nn.Module:
    """A 1 × 1 convolution over dim 1: Linear for (N, F), Conv1d/Conv2d for (N, C, L)/(N, C, H, W)."""
    if rank == 1:
        return nn.Linear(c_in, c_out)
    if rank == 2:
        return nn.Conv1d(c_in, c_out, 1)
    if rank == 3:
        return nn.Conv2d(c_in, c_out, 1)
    raise UserError(f"mtan: stage outputs must be (N, F), (N, C, L) or (N, C, H, W); got a per-sample "
                    f"shape of rank {rank}")


def _resize(a: Tensor, size: tuple[int, ...]) -> Tensor:
    """Bring a (N, C, *S) feature to the spatial size ``size`` by adaptive average pooling."""
    spatial = tuple(a.shape[2:])
    if spatial == size:
        return a
    if not size:  # to a (N, F) stage: global average pooling
        return a.flatten(2).mean(2)
    if not spatial:  # from a (N, F) stage: broadcast over positions
        return a.reshape(*a.shape, *([1] * len(size))).expand(*a.shape, *size)
    pool = F.adaptive_avg_pool1d if len(size) == 1 else F.adaptive_avg_pool2d
    return pool(a, size)


class AttentionModule(nn.Module):
    """One task's attention at one stage: m = sigmoid(g([p; f(a_prev)])), output m ⊙ p.

    f: adaptive average pooling to p's spatial size, then a 1 × 1 conv (linear for 2-D) to
    p's channels; g: 1 × 1 conv → ReLU → 1 × 1 conv (``self.gate[-1]`` is the last layer).
    The first stage has no previous attended feature and uses g(p) alone.
    """

    def __init__(self, shape: tuple[int, ...], prev_shape: tuple[int, ...] | None):
        super().__init__()
        if not shape:
            raise UserError("mtan: a stage output has no feature dimension; cannot attend over it")
        channels, rank = shape[0], len(shape)
        self.spatial = tuple(shape[1:])
        if prev_shape is not None:
            prev_spatial = tuple(prev_shape[1:])
            if prev_spatial and self.spatial and len(prev_spatial) != len(self.spatial):
                raise UserError(f"mtan: cannot resize a stage output of shape {prev_shape} to {shape}")
            self.project = _pointwise(prev_shape[0], channels, rank)
        else:
            self.project = None
        c_in = channels * (2 if self.project is not None else 1)
        self.gate = nn.Sequential(_pointwise(c_in, channels, rank), nn.ReLU(),
                                  _pointwise(channels, channels, rank))

    def forward(self, p: Tensor, a_prev: Tensor | None) -> tuple[Tensor, Tensor]:
        h = p
        if self.project is not None:
            h = torch.cat([p, self.project(_resize(a_prev, tuple(p.shape[2:])))], dim=1)
        mask = torch.sigmoid(self.gate(h))
        return mask, mask * p


def _main(out):
    """The tensor a stage passes on (the first element when a stage passes a tuple)."""
    return out[0] if isinstance(out, tuple) else out


class MTAN(Architecture):
    """Multi-Task Attention Network (Liu, Johns, Davison, CVPR 2019, §3, Fig. 2).

    One shared encoder run stage by stage, p^j = stage_j(p^{j−1}). Each task t has one
    attention module per stage: a_t^j = m_t^j ⊙ p^j with the soft mask
    m_t^j = sigmoid(g_t^j([p^j ; f_t^j(a_t^{j−1})])) (m_t^1 = sigmoid(g_t^1(p^1))), where f
    pools the previous attended feature to p^j's spatial size and maps it to p^j's channels
    with a 1 × 1 conv (linear for 2-D stage outputs), and g is 1 × 1 conv → ReLU → 1 × 1 conv.
    Task t's head reads a_t^P. Simplifications against the paper: g has no batch norm; the
    mask is computed from the stage output p^j, not from the block's first-layer feature u^j
    (a stage is opaque here); f is pooling + a 1 × 1 conv instead of a 3 × 3 conv block.

    Parameter split: the encoder is **shared**; task t's attention modules and head are
    task t's (only task t's head reads them). No architecture parameters. Each head reads its
    own attended feature, not one shared representation: ``has_rep = False``, so the engine's
    rep mode falls back to param mode. ``parameter_blocks``: the encoder's stages (those with
    parameters), in order. Multi-input domains: task t's batch goes through the shared
    encoder and task t's attention. A stage passing a tuple is attended on its first element.
    After a forward, ``masks[t]`` holds task t's masks per stage (detached).

    Needs the encoder's ``stage_shapes`` (the attention modules are built from it). No params.
    """

    name = "mtan"
    has_rep = False
    params = ()

    def __init__(self, tasks, encoder_factory, head_factory, **params):
        super().__init__(tasks, encoder_factory, head_factory, **params)
        self.encoder = encoder_factory()
        shapes = getattr(self.encoder, "stage_shapes", None)
        if getattr(self.encoder, "stages", None) is None or shapes is None:
            raise UserError("mtan: the domain's encoder must declare stage_shapes "
                            "(a StagedEncoder with one output shape per stage)")
        self.attention = nn.ModuleDict({
            t: nn.ModuleList(AttentionModule(shapes[j], shapes[j - 1] if j else None) for j in range(len(shapes)))
            for t in self.tasks})
        self.heads = nn.ModuleDict({t: head_factory(t) for t in self.tasks})
        self.masks: dict[str, list[Tensor]] = {}

    def _attend(self, x, tasks) -> dict[str, Tensor]:
        attended = {t: None for t in tasks}
        for j, stage in enumerate(self.encoder.stages):
            x = stage(x)
            p = _main(x)
            for t in tasks:
                mask, attended[t] = self.attention[t][j](p, attended[t])
                self.masks[t].append(mask.detach())
        return attended

    def forward(self, inputs):
        self.rep = None
        self.masks = {t: [] for t in self.tasks}
        if isinstance(inputs, dict):  # multi-input: each task its own batch
            attended = {t: self._attend(inputs[t], [t])[t] for t in self.tasks}
        else:
            attended = self._attend(inputs, self.tasks)
        return {t: self.heads[t](attended[t]) for t in self.tasks}

    def shared_parameters(self):
        return [p for b in self.parameter_blocks() for p in b]

    def task_parameters(self, task):
        return list(self.attention[task].parameters()) + list(self.heads[task].parameters())

    def parameter_blocks(self):
        return [b for b in (list(s.parameters()) for s in self.encoder.stages) if b]


@hookimpl
def mtl_register(registry):
    registry.add_architecture(MTAN)
