"""The mixture-of-experts engine that MMoE, CGC, DSelect-k and PLE are built on (they differ
in how many levels there are, which experts each gate sees, and the gate itself)."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from mtl_platform.contracts import Architecture
from mtl_platform.errors import UserError


class SoftmaxGate(nn.Module):
    """``w(h) = softmax(W h)``: MMoE Eq. 6 and the CGC/PLE gate (PLE Eq. 3), without a bias
    as in both papers. ``h`` is flattened to (N, in_features) first."""

    def __init__(self, in_features: int, num_experts: int):
        super().__init__()
        self.linear = nn.Linear(in_features, num_experts, bias=False)

    def forward(self, h: Tensor) -> Tensor:
        return torch.softmax(self.linear(h.flatten(1)), dim=-1)


def _main(out):
    """The tensor a stage passes on (the first element when a stage passes a tuple)."""
    return out[0] if isinstance(out, tuple) else out


def stage_shapes_of(encoder: nn.Module, arch: str) -> tuple[tuple[int, ...], ...]:
    """The encoder's ``stage_shapes``; a :class:`UserError` naming ``arch`` when missing."""
    shapes = getattr(encoder, "stage_shapes", None)
    if getattr(encoder, "stages", None) is None or shapes is None:
        raise UserError(f"architecture {arch}: the domain's encoder must declare stage_shapes "
                        f"(a StagedEncoder built with stage_shapes=...), which {arch} needs to size its gates")
    return shapes


def mix(arch: str, weights: Tensor | None, outputs: list) -> Tensor:
    """``Σ_e weights[:, e] · outputs[e]`` for outputs of any shape (N, ...); ``weights`` None
    means a pool of one expert (its output, unchanged)."""
    for out in outputs:
        if not isinstance(out, Tensor):
            raise UserError(f"architecture {arch}: expert outputs must be tensors to be mixed, "
                            f"got {type(out).__name__} (a stage that passes a tuple cannot be a mixed level)")
    if weights is None:
        return outputs[0]
    stacked = torch.stack(outputs, dim=1)  # (N, E, ...)
    w = weights.to(stacked.dtype).reshape(*weights.shape, *([1] * (stacked.dim() - 2)))
    return (w * stacked).sum(dim=1)


class ExtractionNetwork(Architecture):
    """Shared engine of the mixture-of-experts architectures (not registered by itself).

    The encoder's stages are split into *levels* (contiguous groups of stages): one level
    holding every stage (MMoE, CGC, DSelect-k: an expert is a whole encoder copy) or one level
    per stage (PLE). Every expert is its own ``encoder_factory()`` copy; the expert at level ℓ
    is that copy's stages of level ℓ. There are ``num_shared`` shared experts and
    ``num_task`` experts per task.

    At level ℓ, task t's gate mixes its pool ``[task t's experts, shared experts]`` (PLE Eq. 2
    order) into task t's path; below the last level a *shared gate* mixes every task's experts
    and the shared ones into the shared path (PLE Eq. 4), which the shared experts of level
    ℓ+1 read, while task t's experts of level ℓ+1 read task t's path. Task t's head reads its
    path after the last level. A pool of one expert has no gate (its weight is 1).

    Gate inputs: a gate at level ℓ > 0 reads the flattened input of its path (the previous
    level's mix), as in PLE Eq. 4. At level 0 the papers' gates read the raw input x, whose
    shape is not part of the encoder contract; there a task gate reads the flattened output of
    stage 0 of the *first expert of its pool* (its own first task expert, or the first shared
    expert when it has none) and the shared gate that of the first shared expert — an input
    embedding with a shape known from ``stage_shapes[0]``; gradients flow through it.

    Parameter split (so that task t's loss gives zero gradient to every other task's
    ``task_parameters``): experts and gates are task t's unless task t's parameter reaches
    another task's output. It does exactly when a shared path exists (``num_shared > 0`` and
    more than one level): task t's experts at levels below the last are mixed into the shared
    path by the shared gate, and task t's gate at level ℓ feeds task t's experts at ℓ+1, so
    it reaches other tasks when ℓ+1 is below the last level. Those parameters are *shared*.
    Shared experts and shared gates are shared; heads are their task's. Nothing is an
    ``architecture_parameters()`` entry: the gates are ordinary model weights trained with
    the task losses (as in the papers). ``parameter_blocks()`` groups the shared parameters
    per encoder stage (a gate with the last stage of its level). No single representation
    feeds every head, so ``has_rep`` is False.

    Multi-input domains (``{task: batch}``): the network is run on each task's batch and task
    t's output is taken from the run on its own batch (the shared path mixes all tasks' experts
    on one batch). ``gate_weights`` holds the detached weights of the last forward,
    ``{"<task or shared>@<level>": (N, pool)}``.
    """

    has_rep = False

    def _build(self, encoder_factory: Callable[[], nn.Module], head_factory: Callable[[str], nn.Module],
               num_shared: int, num_task: int, per_stage: bool,
               gate_factory: Callable[[int, int], nn.Module]) -> None:
        arch = self.name
        if num_shared < 0 or num_task < 0 or num_shared + num_task < 1:
            raise UserError(f"architecture {arch}: needs at least one expert per task's gate, got "
                            f"{num_shared} shared and {num_task} task-specific experts")
        self.num_shared, self.num_task = int(num_shared), int(num_task)
        self.shared_experts = nn.ModuleList(encoder_factory() for _ in range(self.num_shared))
        self.task_experts = nn.ModuleDict(
            {t: nn.ModuleList(encoder_factory() for _ in range(self.num_task)) for t in self.tasks})
        first = self.shared_experts[0] if self.num_shared else self.task_experts[self.tasks[0]][0]
        shapes = stage_shapes_of(first, arch)
        n_stages = len(first.stages)
        self.levels = [[s] for s in range(n_stages)] if per_stage else [list(range(n_stages))]
        nlev = len(self.levels)

        def gate_in(level: int) -> int:
            return math.prod(shapes[0] if level == 0 else shapes[self.levels[level - 1][-1]])

        task_pool = self.num_task + self.num_shared
        shared_pool = len(self.tasks) * self.num_task + self.num_shared
        self.task_gates = nn.ModuleDict({t: nn.ModuleDict(
            {str(lv): gate_factory(gate_in(lv), task_pool) for lv in range(nlev) if task_pool > 1})
            for t in self.tasks})
        self.shared_gates = nn.ModuleDict(
            {str(lv): gate_factory(gate_in(lv), shared_pool) for lv in range(nlev - 1)
             if self.num_shared > 0 and shared_pool > 1})
        self.heads = nn.ModuleDict({t: head_factory(t) for t in self.tasks})
        self.gate_weights: dict[str, Tensor] = {}

    # --- parameter split -------------------------------------------------------------
    def _experts_leak(self, level: int) -> bool:
        """Task experts at ``level`` are mixed into the shared path (so they are shared)."""
        return self.num_task > 0 and str(level) in self.shared_gates

    def _gate_leaks(self, level: int) -> bool:
        return level + 1 < len(self.levels) and self._experts_leak(level + 1)

    def parameter_blocks(self):
        blocks = []
        for lv, group in enumerate(self.levels):
            for s in group:
                block = [p for enc in self.shared_experts for p in enc.stages[s].parameters()]
                if self._experts_leak(lv):
                    block += [p for t in self.tasks for enc in self.task_experts[t]
                              for p in enc.stages[s].parameters()]
                if s == group[-1]:
                    if str(lv) in self.shared_gates:
                        block += list(self.shared_gates[str(lv)].parameters())
                    if self._gate_leaks(lv):
                        block += [p for t in self.tasks if str(lv) in self.task_gates[t]
                                  for p in self.task_gates[t][str(lv)].parameters()]
                if block:
                    blocks.append(block)
        return blocks

    def shared_parameters(self):
        return [p for block in self.parameter_blocks() for p in block]

    def task_parameters(self, task):
        params = []
        for lv, group in enumerate(self.levels):
            if not self._experts_leak(lv):
                params += [p for enc in self.task_experts[task] for s in group for p in enc.stages[s].parameters()]
        for lv in range(len(self.levels)):
            if str(lv) in self.task_gates[task] and not self._gate_leaks(lv):
                params += list(self.task_gates[task][str(lv)].parameters())
        return params + list(self.heads[task].parameters())

    # --- forward ---------------------------------------------------------------------
    @staticmethod
    def _run(encoder: nn.Module, group: list[int], x):
        """Run ``encoder``'s stages ``group`` on ``x``; also return stage 0's output (or None)."""
        first = None
        for s in group:
            x = encoder.stages[s](x)
            if s == 0:
                first = _main(x)
        return x, first

    def _gate(self, gate: nn.Module | None, h: Tensor, key: str) -> Tensor | None:
        if gate is None:
            return None
        weights = gate(h.flatten(1))
        self.gate_weights[key] = weights.detach()
        return weights

    def features(self, x) -> dict[str, Tensor]:
        """Task t's path after the last level (what its head reads), for every task."""
        self.gate_weights = {}
        task_in = {t: x for t in self.tasks}
        shared_in = x
        last = len(self.levels) - 1
        for lv, group in enumerate(self.levels):
            shared = [self._run(enc, group, shared_in) for enc in self.shared_experts]
            own = {t: [self._run(enc, group, task_in[t]) for enc in self.task_experts[t]] for t in self.tasks}
            shared_out = [o for o, _ in shared]
            new_in = {}
            for t in self.tasks:
                pool = own[t] + shared
                gate = self.task_gates[t][str(lv)] if str(lv) in self.task_gates[t] else None
                h = pool[0][1] if lv == 0 else task_in[t]
                new_in[t] = mix(self.name, self._gate(gate, h, f"{t}@{lv}"), [o for o, _ in own[t]] + shared_out)
            if lv < last and self.num_shared > 0:
                gate = self.shared_gates[str(lv)] if str(lv) in self.shared_gates else None
                h = shared[0][1] if lv == 0 else shared_in
                pool_out = [o for t in self.tasks for o, _ in own[t]] + shared_out
                shared_in = mix(self.name, self._gate(gate, h, f"shared@{lv}"), pool_out)
            task_in = new_in
        return task_in

    def forward(self, inputs):
        self.rep = None
        if isinstance(inputs, dict):  # multi-input: each task from the run on its own batch
            return {t: self.heads[t](self.features(inputs[t])[t]) for t in self.tasks}
        feats = self.features(inputs)
        return {t: self.heads[t](feats[t]) for t in self.tasks}
