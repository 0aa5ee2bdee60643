"""Progressive Layered Extraction (Tang, Liu, Zhao, Gong, RecSys 2020, §4.3, Eq. 4–5)."""
from __future__ import annotations

from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param

from ._experts import ExtractionNetwork, SoftmaxGate


class PLE(ExtractionNetwork):
    """Progressive Layered Extraction (Tang, Liu, Zhao, Gong, RecSys 2020, §4.3, Eq. 4–5).

    CGC extraction networks stacked with one *level per encoder stage*: the expert e at level
    j is stage j of expert e's own ``encoder_factory()`` copy (so there are
    ``num_shared_experts + m · num_task_experts`` encoder copies, each used stage by stage).
    Level j: task t's gate (softmax over task t's and the shared experts, Eq. 4) forms task t's
    path, which task t's experts at level j+1 read; below the last level a shared gate mixes
    all experts (every task's and the shared ones) into the shared path, which the shared
    experts at level j+1 read. After the last level task t's head reads task t's path (Eq. 5).
    Level 0 gates read the first pool expert's stage-0 output instead of the raw input (see
    :class:`ExtractionNetwork`).

    Consequence for the parameter split: because the shared gate at level j < last mixes every
    task's experts into the shared path, another task's loss reaches task t's experts at
    levels below the last and task t's gates at levels below the last-but-one. Those are
    classified *shared* (they get every task's gradient); task t's experts at the last level,
    its gates at the last two levels and its head are task-specific. With
    ``num_shared_experts = 0`` there is no shared path and each task is an independent network.

    Params: ``num_shared_experts`` (int, 1), ``num_task_experts`` (int, 1).
    """

    name = "ple"
    params = (
        Param("num_shared_experts", int, 1, "shared experts per level", bounds="[0, inf)"),
        Param("num_task_experts", int, 1, "experts per task per level", bounds="[0, inf)"),
    )

    per_stage = True  # one level per encoder stage; CGC is the single-level case

    def __init__(self, tasks, encoder_factory, head_factory, num_shared_experts=1, num_task_experts=1, **params):
        super().__init__(tasks, encoder_factory, head_factory, num_shared_experts=num_shared_experts,
                         num_task_experts=num_task_experts, **params)
        self._build(encoder_factory, head_factory, num_shared_experts, num_task_experts,
                    per_stage=self.per_stage, gate_factory=SoftmaxGate)


@hookimpl
def mtl_register(registry):
    registry.add_architecture(PLE)
