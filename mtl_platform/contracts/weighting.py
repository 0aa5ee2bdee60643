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

    ``weights(losses, **computed)`` receives the detached losses (m,) and, by ``needs``,
    ``gram`` (m × m, ``G = J Jᵀ``), ``block_grams`` (blocks × m × m, one per
    ``parameter_blocks()`` entry) or ``jacobian`` (m × P). It returns task weights ``w``
    (m,), per-block weights (blocks × m, with ``BLOCK_GRAMIANS``) or one aggregated shared
    gradient (P,, with ``JACOBIAN``); the engine detaches and applies them. A weighting never
    calls ``backward()``.

    ``scales_heads``: True for loss weightings (every parameter gets ∇Σ w_t L_t); False for
    gradient methods (the gradient space gets the combined gradient, every other parameter
    the unweighted ∇Σ_t L_t). ``mode`` forces ``"rep"`` or ``"param"`` (None: the config's).
    A weighting may own parameters (then it adds ``aux_loss``, given the same ``computed``)
    and state (buffers, or ``state_dict``/``load_state_dict`` overrides); random draws use
    torch's global generator, which checkpoints save and restore.
    """

    needs = Needs.LOSSES
    scales_heads = True
    mode: str | None = None

    def __init__(self, tasks: list[str], **params):
        nn.Module.__init__(self)
        self.tasks = list(tasks)
        self.check_ranges(params, "weighting")
        self.config = params

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    def weights(self, losses: Tensor, **computed) -> Tensor:
        raise NotImplementedError

    def aux_loss(self, losses: Tensor, **computed) -> Tensor | None:
        """A loss over the weighting's own parameters only (``losses`` and ``computed`` are detached)."""
        return None

    def epoch_end(self, mean_losses: Tensor) -> None:
        """Called with the epoch's mean training loss per task (DWA)."""

    def after_step(self, closure) -> None:
        """Called after the optimizer step; ``closure()`` re-evaluates ``{task: loss}`` on the
        same batch with the updated model, without gradients (FAMO)."""

    def equal(self, like: Tensor) -> Tensor:
        return torch.ones(self.num_tasks, dtype=like.dtype, device=like.device)
