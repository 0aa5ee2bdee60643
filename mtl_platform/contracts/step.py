"""What one call of an update protocol returns to the trainer (DESIGN.md §3.4): the detached
task losses of the batch and the task weights the weighting chose, so the trainer logs both
without reading the engine."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from torch import Tensor


@dataclass
class StepOutput:
    """``losses``: detached task losses; ``weights``: the (m,) task weights of the step, or None
    (a loss-free protocol step, or a weighting that answered with per-block weights or a
    gradient)."""

    losses: Mapping[str, Tensor]
    weights: Tensor | None = None


def task_weights(answer: Tensor | None, num_tasks: int) -> Tensor | None:
    """The engine's answer as task weights, when it is in that form."""
    if answer is not None and answer.dim() == 1 and answer.shape[0] == num_tasks:
        return answer
    return None


def detached(losses: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach() for k, v in losses.items()}
