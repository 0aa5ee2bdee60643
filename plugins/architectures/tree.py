"""A branched tree of encoder stages: what architecture searches derive (CoNAL, Yue PhD thesis
2023, §5.2 "final architecture"; DSMTL-AL retraining, Eq. 6.9; learning to branch, Guo et al.
ICML 2020), rebuilt from plain JSON."""
from __future__ import annotations

import torch
from torch import nn

from mtl_platform.contracts import Architecture
from mtl_platform.errors import UserError
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param


def groups_from_branch_points(tasks: list[str], points: dict[str, int], stages: int) -> list[list[list[str]]]:
    """CoNAL's tree: task t uses shared stages 1 … p_t−1 and its own stages p_t … P−1, so stage k
    (1-based) is shared by the tasks with p_t > k and private to each other task."""
    out = []
    for k in range(1, stages + 1):
        shared = [t for t in tasks if points[t] > k]
        out.append(([shared] if shared else []) + [[t] for t in tasks if points[t] <= k])
    return out


class Tree(Architecture):
    """A tree network: at encoder stage k, the tasks are partitioned into groups, each group
    running its own copy of stage k on the output of its parent group at stage k−1.

    ``groups`` lists one partition per stage (each refining the previous one); or give
    ``branch_points`` (task → p ∈ 1…P, CoNAL's convention: 1 = a separate network, P = fully
    shared). Each group's module is stage k of a fresh ``encoder_factory()`` copy (fresh or
    pretrained weights, as the domain builds them: retraining starts "from scratch", spec
    thesis §3.5), so stages no task uses are never kept. ``public_gate`` (DSMTL-AL's
    retraining, Eq. 6.9) also keeps the full all-task encoder f_S and feeds task t's head with
    α_t·f_S(x) + (1 − α_t)·branch_t(x), α_t = sigmoid(a_t), a_t = 0 at start, for each task
    whose branch is not f_S itself. Modules used by two or more tasks (and f_S) are shared;
    singleton modules, the head and a_t belong to their task. ``rep`` is the encoder output
    when every task shares all of it.
    """

    name = "tree"
    has_rep = True
    params = (
        Param("groups", list, None, "per encoder stage, a partition of the tasks into groups sharing that "
              "stage", optional=True),
        Param("branch_points", dict, None, "task → branch point 1…P (1: a separate network, P: fully shared); "
              "instead of groups", optional=True, item=int, bounds="[1, inf)"),
        Param("public_gate", bool, False, "gate each branched task with the full shared encoder (DSMTL-AL)"),
    )

    def __init__(self, tasks, encoder_factory, head_factory, groups=None, branch_points=None,
                 public_gate=False, **params):
        super().__init__(tasks, encoder_factory, head_factory, groups=groups, branch_points=branch_points,
                         public_gate=public_gate, **params)
        encoders = {t: encoder_factory() for t in self.tasks}
        stages = len(encoders[self.tasks[0]].stages)
        self.points = stages + 1
        if (groups is None) == (branch_points is None):
            raise UserError("architecture: give exactly one of groups and branch_points")
        if branch_points is not None:
            groups = groups_from_branch_points(self.tasks, self._check_points(branch_points), stages)
        self.groups = self._check_groups(groups, stages)
        self.parent = [[self._parent(k, g) for g in level] for k, level in enumerate(self.groups)]
        self.blocks = nn.ModuleList(
            nn.ModuleList(encoders[g[0]].stages[k] for g in level) for k, level in enumerate(self.groups))
        self.heads = nn.ModuleDict({t: head_factory(t) for t in self.tasks})
        # DSMTL-AL's public encoder f_S: the chain of the groups of tasks with p_t > k, then, past
        # the deepest such stage, a tail of fresh stages (only when no task is fully shared)
        self.public_chain: list[int] = []
        self.gated: list[str] = []
        if public_gate:
            if branch_points is None:
                raise UserError("architecture.public_gate: needs branch_points (the public encoder is the chain "
                                "of stages shared by the tasks that branch latest)")
            points = self._check_points(branch_points)
            for k, level in enumerate(self.groups):
                shared = [t for t in self.tasks if points[t] > k + 1]
                if not shared:
                    break
                self.public_chain.append(level.index(shared))
            self.public_tail = nn.ModuleList(list(encoder_factory().stages)[len(self.public_chain):])
            self.gated = [t for t in self.tasks if points[t] < self.points]
            self.gates = nn.ParameterDict({t: nn.Parameter(torch.zeros(())) for t in self.gated})

    # -- validation ------------------------------------------------------------------------
    def _check_points(self, points: dict) -> dict[str, int]:
        out = {}
        for t in self.tasks:
            p = points.get(t)
            if isinstance(p, bool) or not isinstance(p, int) or not 1 <= p <= self.points:
                raise UserError(f"architecture.branch_points.{t}: got {p!r}, expected an int in 1..{self.points}")
            out[t] = p
        unknown = sorted(set(points) - set(self.tasks))
        if unknown:
            raise UserError(f"architecture.branch_points: unknown tasks {unknown}; tasks: {', '.join(self.tasks)}")
        return out

    def _check_groups(self, groups, stages: int) -> list[list[list[str]]]:
        if not isinstance(groups, list) or len(groups) != stages:
            raise UserError(f"architecture.groups: expected a list of {stages} partitions (one per encoder stage)")
        out = []
        for k, level in enumerate(groups):
            seen = [t for g in level for t in g] if isinstance(level, list) else None
            if seen is None or sorted(seen) != sorted(self.tasks) or not all(isinstance(g, list) and g for g in level):
                raise UserError(f"architecture.groups[{k}]: expected a partition of the tasks "
                                f"({', '.join(self.tasks)}) into non-empty lists, got {level!r}")
            level = [[t for t in self.tasks if t in g] for g in level]  # canonical order
            if out:
                for g in level:
                    if not any(set(g) <= set(p) for p in out[-1]):
                        raise UserError(f"architecture.groups[{k}]: group {g} splits across stage {k}'s groups; "
                                        f"each stage must refine the one before")
            out.append(level)
        return out

    def _parent(self, k: int, group: list[str]) -> int:
        if k == 0:
            return -1
        return next(i for i, p in enumerate(self.groups[k - 1]) if set(group) <= set(p))

    # -- forward ------------------------------------------------------------------------------
    def forward(self, inputs):
        outs, public = [inputs], inputs
        for k in range(len(self.groups)):
            outs = [block(inputs if k == 0 else outs[self.parent[k][i]]) for i, block in enumerate(self.blocks[k])]
            if k < len(self.public_chain):
                public = outs[self.public_chain[k]]
        final = {t: outs[i] for i, g in enumerate(self.groups[-1]) for t in g}
        if self.gated:
            for stage in self.public_tail:
                public = stage(public)
            for t in self.gated:
                alpha = torch.sigmoid(self.gates[t])
                final[t] = alpha * public + (1 - alpha) * final[t]
        shared_all = len(self.groups[-1]) == 1 and not self.gated
        self.rep = final[self.tasks[0]] if shared_all else None
        return {t: self.heads[t](final[t]) for t in self.tasks}

    # -- parameter sets --------------------------------------------------------------------------
    def _is_shared(self, k: int, i: int) -> bool:
        """Module i of stage k is reached by several tasks (directly, or through the gates)."""
        public = bool(self.gated) and k < len(self.public_chain) and self.public_chain[k] == i
        return len(self.groups[k][i]) > 1 or public

    def shared_parameters(self):
        return [p for b in self.parameter_blocks() for p in b]

    def task_parameters(self, task):
        own = [p for k, level in enumerate(self.groups) for i, g in enumerate(level)
               if g == [task] and not self._is_shared(k, i) for p in self.blocks[k][i].parameters()]
        gate = [self.gates[task]] if task in self.gated else []
        return own + list(self.heads[task].parameters()) + gate

    def parameter_blocks(self):
        blocks = []
        for k, level in enumerate(self.groups):
            block = [p for i in range(len(level)) if self._is_shared(k, i) for p in self.blocks[k][i].parameters()]
            if self.gated and k >= len(self.public_chain):
                block += list(self.public_tail[k - len(self.public_chain)].parameters())
            if block:
                blocks.append(block)
        return blocks

    def branch_points(self) -> dict[str, int]:
        """Where each task leaves every other task: the first stage (1-based) it runs alone, or P."""
        out = {}
        for t in self.tasks:
            k = next((k for k, level in enumerate(self.groups) if [t] in level), len(self.groups))
            out[t] = k + 1
        return out

    def search_state(self) -> dict:
        if not self.gated:
            return {}
        values = torch.sigmoid(torch.stack([self.gates[t].detach() for t in self.gated])).tolist()
        return {"gates": dict(zip(self.gated, values))}


@hookimpl
def mtl_register(registry):
    registry.add_architecture(Tree)
