"""The weighting contract (DESIGN.md §3.2)."""
from __future__ import annotations

import enum

import torch
from torch import Tensor, nn

from .component import Configurable


class Needs(enum.Enum):
    """What a weighting asks the gradient engine to compute."""

    LOSSES = "losses"
    GRAMIAN = "gramian"
    BLOCK_GRAMIANS = "block_gramians"
    JACOBIAN = "jacobian"


class Weighting(Configurable, nn.Module):
    """Turns per-task losses (or what the engine computed from them) into one update.

    ``weights(losses, **computed)`` returns task weights ``w`` (m,), per-block weights
    (blocks × m) or one aggregated shared gradient (P,); the engine detaches and applies
    them. A weighting never calls ``backward()``. It may own parameters (then it adds
    ``aux_loss``) and state (buffers, or ``state_dict``/``load_state_dict`` overrides).
    ``scales_heads``: True for loss weightings (every parameter gets ∇Σ w_t L_t).
    """

    needs = Needs.LOSSES
    scales_heads = True

    def __init__(self, tasks: list[str], **params):
        nn.Module.__init__(self)
        self.tasks = list(tasks)
        self.config = params

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    def weights(self, losses: Tensor, **computed) -> Tensor:
        raise NotImplementedError

    def aux_loss(self, losses: Tensor) -> Tensor | None:
        """A loss over the weighting's own parameters only (``losses`` is detached)."""
        return None

    def epoch_end(self, mean_losses: Tensor) -> None:
        """Called with the epoch's mean training loss per task (DWA)."""

    def after_step(self, closure) -> None:
        """Called after the optimizer step; ``closure()`` re-evaluates the losses (FAMO)."""

    def equal(self, like: Tensor) -> Tensor:
        return torch.ones(self.num_tasks, dtype=like.dtype, device=like.device)
