"""The seam between the UDA domain and its adaptation methods (sub-kind ``uda.method``).

A method says what its alignment head is and how one paired batch becomes the two task
losses: ``alignment`` (the paper's L1, with any static trade-off folded in before gradients
are taken, spec gradients.md §1.7) and ``classification`` (source cross-entropy, L2). The
network is HPS-shaped: ``model.encoder`` is the generator G (backbone + bottleneck),
``model.heads["classification"]`` the classifier C (or MCD's and DWL's several) and
``model.heads["alignment"]`` the method's discriminator D. Single-step methods leave the update
to the domain's default protocol (losses → engine → step).

A method also declares its **gradient space** (DESIGN.md §3.6): the parameters a weighting's
per-task gradients g_i are taken over — ``generator`` (G) or ``base_network`` (G and C, as the
GH code's ``base_network``); never D. Its ``gradient_space`` parameter defaults to the spec's
choice for that method (gradients.md §1.7) and can be overridden in the config; the resolved
config written into the run holds the value used.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from mtl_platform.contracts import Configurable, Needs
from mtl_platform.params import Param

GRADIENT_SPACES = ("generator", "base_network")


def gradient_space_param(default: str, why: str) -> Param:
    """The ``gradient_space`` option with the method's default and the reason for it."""
    return Param("gradient_space", str, default, "what the weighting's task gradients are taken over: generator "
                 f"(G) or base_network (G and the classifier; never the discriminator); default {default}: {why}",
                 choices=GRADIENT_SPACES)


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

    def gradient_space(self, model: nn.Module) -> list[nn.Parameter]:
        """The trainable parameters the weighting's per-task gradients are taken over, in a fixed
        order: G, then (``base_network``) the classifier head. A method without the parameter
        (a plugin's) uses G."""
        space = list(model.encoder.parameters())
        if self.config.get("gradient_space", "generator") == "base_network":
            space += list(model.heads["classification"].parameters())
        return [p for p in space if p.requires_grad]

    def check_weighting(self, weighting) -> None:
        """Refuse (``UserError``) a weighting the method's steps cannot apply; any by default."""

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


def applies_to_heads(weighting) -> bool:
    """Whether the weighting's answer reaches parameters outside the gradient space: loss
    weightings (every parameter gets ∇Σ w_t L_t) do; gradient methods write their combined
    gradient on the gradient space only (DESIGN.md §3.2)."""
    return weighting.scales_heads or weighting.needs is Needs.LOSSES
