"""Cross-stitch networks (Misra, Shrivastava, Gupta, Hebert, CVPR 2016, §3, Eq. 1)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from mtl_platform.contracts import Architecture
from mtl_platform.errors import UserError
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param


class CrossStitchUnit(nn.Module):
    """Eq. 1 for m tasks: x̃_t = Σ_s α_{ts} x_s, α shared over every position of a channel.

    ``per_channel``: α has shape (C, m, m), one m × m matrix per channel (dim 1 of the
    stage output: the channel of a 4-D feature map, the feature of a 2-D one); otherwise one
    (m, m) matrix for the whole stage. Initialised to ``self_weight`` on the diagonal and
    (1 − self_weight)/(m − 1) off it. For m = 1 the unit is the identity and has no parameter.
    """

    def __init__(self, m: int, channels: int, self_weight: float, per_channel: bool):
        super().__init__()
        self.m = m
        self.per_channel = per_channel
        if m == 1:
            self.alpha = None
            return
        off = (1.0 - self_weight) / (m - 1)
        init = torch.full((m, m), off)
        init.fill_diagonal_(self_weight)
        if per_channel:
            init = init.expand(channels, m, m).clone()
        self.alpha = nn.Parameter(init)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        if self.alpha is None:
            return list(xs)
        shapes = {tuple(x.shape) for x in xs}
        if len(shapes) != 1:
            raise UserError(f"cross_stitch: the tasks' features must have one shape to be mixed, got "
                            f"{sorted(shapes)} (multi-input domains need equal batch sizes)")
        x = torch.stack(xs)  # (m, N, C, ...)
        m, n = x.shape[:2]
        if self.per_channel:
            flat = x.reshape(m, n, x.shape[2], -1)  # (m, N, C, positions)
            out = torch.einsum("cts,snck->tnck", self.alpha, flat)
        else:
            flat = x.reshape(m, n, -1)
            out = torch.einsum("ts,snk->tnk", self.alpha, flat)
        return list(out.reshape(x.shape).contiguous().unbind(0))


def _main(out):
    """The tensor a stage passes on (the first element when a stage passes a tuple)."""
    return out[0] if isinstance(out, tuple) else out


def _replace_main(out, value):
    return (value,) + tuple(out[1:]) if isinstance(out, tuple) else value


class CrossStitch(Architecture):
    """Cross-stitch networks (Misra, Shrivastava, Gupta, Hebert, CVPR 2016, §3, Eq. 1).

    One encoder copy per task, with a cross-stitch unit after every stage (except the last
    unless ``after_last``) that linearly mixes the tasks' stage outputs,
    x̃_t = Σ_s α_{ts} x_s; task t's head reads copy t's final (mixed, with ``after_last``)
    output. α is initialised as in the paper (``self_weight`` on the diagonal).

    Parameter split. The units mix all tasks, and through them task t's loss reaches every
    copy's stages up to the last unit, so those stages and the units are **shared**
    (``shared_parameters``: per stage, every copy's parameters in task order, then the stage's
    unit; ``parameter_blocks`` groups them the same way). A copy's stages *after* the last
    unit reach only that copy's head — with the default ``after_last=False`` that is copy t's
    last stage — so they are task t's, with its head (``task_parameters(t)``); task t's loss
    then leaves every other task's parameters with zero gradient. The α are ordinary learned
    weights trained with the model, not a search variable: no ``architecture_parameters``.

    No single representation is read by every head: ``has_rep = False`` (rep mode falls back
    to param mode). Multi-input domains: copy t reads task t's batch and the units mix sample
    i across tasks, so the batches must have equal shapes. A stage that passes a tuple has its
    first element mixed and the rest passed on unchanged.

    Needs the encoder's ``stage_shapes`` (the per-channel α are built from it).
    """

    name = "cross_stitch"
    has_rep = False
    params = (
        Param("self_weight", float, 0.9, "initial α_tt (diagonal); off-diagonal α_ts = (1 − self_weight)/(m − 1)",
              bounds="[0, 1]"),
        Param("after_last", bool, False, "also put a cross-stitch unit after the encoder's last stage"),
        Param("per_channel", bool, True, "one m × m α per channel/feature (paper); false: one per stage"),
    )

    def __init__(self, tasks, encoder_factory, head_factory, self_weight: float = 0.9,
                 after_last: bool = False, per_channel: bool = True, **params):
        super().__init__(tasks, encoder_factory, head_factory, self_weight=self_weight,
                         after_last=after_last, per_channel=per_channel, **params)
        self.encoders = nn.ModuleDict({t: encoder_factory() for t in self.tasks})
        first = self.encoders[self.tasks[0]]
        shapes = getattr(first, "stage_shapes", None)
        if getattr(first, "stages", None) is None or shapes is None:
            raise UserError("cross_stitch: the domain's encoder must declare stage_shapes "
                            "(a StagedEncoder with one output shape per stage)")
        self.n_stages = len(first.stages)
        self.after_last = bool(after_last)
        n_units = self.n_stages if self.after_last else self.n_stages - 1
        self.units = nn.ModuleList(
            CrossStitchUnit(len(self.tasks), shapes[j][0] if shapes[j] else 1, float(self_weight),
                            bool(per_channel) and len(shapes[j]) > 0)
            for j in range(n_units))
        self.heads = nn.ModuleDict({t: head_factory(t) for t in self.tasks})

    def forward(self, inputs):
        self.rep = None
        if isinstance(inputs, dict):
            xs = [inputs[t] for t in self.tasks]
        else:
            xs = [inputs] * len(self.tasks)
        for j in range(self.n_stages):
            outs = [self.encoders[t].stages[j](x) for t, x in zip(self.tasks, xs)]
            if j < len(self.units):
                mixed = self.units[j]([_main(o) for o in outs])
                outs = [_replace_main(o, v) for o, v in zip(outs, mixed)]
            xs = outs
        return {t: self.heads[t](x) for t, x in zip(self.tasks, xs)}

    def _stage_params(self, j: int, tasks) -> list[nn.Parameter]:
        return [p for t in tasks for p in self.encoders[t].stages[j].parameters()]

    def parameter_blocks(self):
        blocks = []
        for j, unit in enumerate(self.units):
            block = self._stage_params(j, self.tasks) + list(unit.parameters())
            if block:
                blocks.append(block)
        return blocks

    def shared_parameters(self):
        return [p for b in self.parameter_blocks() for p in b]

    def task_parameters(self, task):
        private = [p for j in range(len(self.units), self.n_stages) for p in self._stage_params(j, [task])]
        return private + list(self.heads[task].parameters())


@hookimpl
def mtl_register(registry):
    registry.add_architecture(CrossStitch)
