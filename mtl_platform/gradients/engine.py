"""The gradient engine (DESIGN.md §3.1–3.2), minimal form: the ``LOSSES`` case.

``backward`` asks the weighting for task weights from the detached losses and adds
``∇(Σ_t w_t L_t + aux)`` to ``.grad`` in one backward, exactly as ``Tensor.backward``
would (the caller zeroes gradients). Every parameter the losses reach gets its gradient,
in ``param`` and ``rep`` mode alike — for a loss-only weighting the two coincide, so the
encoder always receives its gradient (unlike LibMTL #83).

Weightings that need the Gramian, block Gramians or the Jacobian are served by the full
engine; this one refuses them at construction with one clear line, never silently.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

from ..contracts.weighting import Needs, Weighting
from ..errors import UserError

MODES = ("param", "rep")
SUPPORTED_NEEDS = (Needs.LOSSES,)


class GradientEngine:
    """Computes what a weighting declares and applies the combined update."""

    def __init__(self, model: nn.Module, weighting: Weighting, tasks: Sequence[str], mode: str = "param"):
        if mode not in MODES:
            raise UserError(f"gradients.mode: got {mode!r}, allowed: {', '.join(MODES)}")
        self.model = model
        self.weighting = weighting
        self.tasks = list(tasks)
        self.mode = mode
        self.check(weighting)
        self.last_weights: Tensor | None = None

    @staticmethod
    def check(weighting: Weighting) -> None:
        if weighting.needs not in SUPPORTED_NEEDS:
            raise UserError(f"weighting {weighting.name!r} needs {weighting.needs.name}, which this gradient "
                            f"engine does not compute yet (it serves: "
                            f"{', '.join(n.name for n in SUPPORTED_NEEDS)})")

    def stack(self, losses: Mapping[str, Tensor]) -> Tensor:
        missing = [t for t in self.tasks if t not in losses]
        if missing:
            raise KeyError(f"losses lack tasks {missing}; got {sorted(losses)}")
        return torch.stack([losses[t].reshape(()) for t in self.tasks])

    def backward(self, losses: Mapping[str, Tensor], params: Sequence[Tensor] | None = None,
                 weighting: Weighting | None = None) -> Tensor:
        """Add the weighting's combined gradient to ``.grad``; return the weights used."""
        weighting = weighting or self.weighting
        if weighting is not self.weighting:
            self.check(weighting)
        vector = self.stack(losses)
        detached = vector.detach()
        weights = weighting.weights(detached).detach()
        total = (weights * vector).sum()
        aux = weighting.aux_loss(detached)
        if aux is not None:
            total = total + aux
        total.backward()
        self.last_weights = weights
        return weights
