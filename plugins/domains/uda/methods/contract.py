"""The seam between the UDA domain and its adaptation methods (sub-kind ``uda.method``).

A method says what its alignment head is and how one paired batch becomes the two task
losses: ``alignment`` (the paper's L1, with any static trade-off folded in before gradients
are taken, spec gradients.md §1.7) and ``classification`` (source cross-entropy, L2). The
network is HPS-shaped: ``model.encoder`` is the generator G (backbone + bottleneck), the
gradient space of the weightings (GH, GH++, …); ``model.heads["classification"]`` is the
classifier C and ``model.heads["alignment"]`` the method's discriminator D. Single-step
methods leave the update to the domain's default protocol (losses → engine → step).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from mtl_platform.contracts import Configurable


class UDAMethod(Configurable):
    """One adaptation method. ``progress`` is the fraction of the scheduled iterations done
    (0 … 1), a pure function of the batch's position, for schedules such as the GRL's.
    ``aligns`` is False for a method without an alignment task (source only)."""

    aligns = True
    epoch_iterations: int | None = None  # set by the domain before ``train_step`` (DWL's per-epoch update)

    def __init__(self, seed: int = 0, **params):
        self.seed = int(seed)
        self.check_ranges(params, "domain.method")
        self.config = params

    def classification_head(self, features: int, num_classes: int) -> nn.Module:
        """The classifier C (a linear layer unless the method needs more, e.g. MCD's two)."""
        return nn.Linear(features, num_classes)

    def alignment_head(self, features: int, num_classes: int) -> nn.Module:
        return nn.Identity()

    def check_optimizers(self, optimizers: list) -> None:
        """Refuse (``UserError``) optimizers the method's steps cannot use (the domain's
        ``check_optimizers``, before the run starts); any by default."""

    def losses(self, model: nn.Module, xs: Tensor, ys: Tensor, xt: Tensor, progress: Tensor,
               tasks: list[str]) -> dict[str, Tensor]:
        raise NotImplementedError


def source_and_target_features(model: nn.Module, xs: Tensor, xt: Tensor) -> tuple[Tensor, Tensor]:
    """G on the concatenated batch (one pass, shared BatchNorm statistics, as tllib does)."""
    f = model.encoder(torch.cat([xs, xt]))
    return f[: xs.shape[0]], f[xs.shape[0]:]
