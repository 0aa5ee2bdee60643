"""The architecture contract (DESIGN.md §3.1)."""
from __future__ import annotations

from typing import Callable

from torch import nn

from .component import Configurable


class Architecture(Configurable, nn.Module):
    """Wires encoder copies and heads into one module.

    Built only from the domain's ``encoder_factory()`` and ``head_factory(task)``.
    Every trainable parameter is in exactly one of ``shared_parameters()``,
    ``task_parameters(t)`` (for some t) and ``architecture_parameters()``.
    ``rep`` is the shared representation of the last forward, if the architecture has one.
    """

    has_rep = False

    def __init__(self, tasks: list[str], encoder_factory: Callable[[], nn.Module],
                 head_factory: Callable[[str], nn.Module], **params):
        nn.Module.__init__(self)
        self.tasks = list(tasks)
        self.config = params
        self.rep = None

    def forward(self, inputs):  # -> {task: prediction}
        raise NotImplementedError

    def shared_parameters(self) -> list[nn.Parameter]:
        raise NotImplementedError

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        raise NotImplementedError

    def architecture_parameters(self) -> list[nn.Parameter]:
        return []

    def parameter_blocks(self) -> list[list[nn.Parameter]]:
        """Shared parameters grouped per encoder stage, in order (block-wise methods)."""
        return [self.shared_parameters()]
