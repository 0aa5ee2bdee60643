"""One domain's features, from G on that batch alone or cut from one pass over both domains.

MCD's and DWL's own code forward a step's source or target batch alone; tllib forwards the
source and target batches together in every step. With a BatchNorm generator this decides
which statistics each step normalises with: per-domain batches (``separate``) or mixed ones
(``joint``), the latter matching the running statistics used at evaluation.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from mtl_platform.params import Param


def forward_param(joint_also: str = "") -> Param:
    """The ``forward`` option; ``joint_also`` tells what else ``joint`` changes in a method."""
    return Param("forward", str, "separate", "separate: a one-domain step forwards that domain's batch alone (the "
                 f"method's own code); joint: every step forwards source and target together{joint_also} (tllib)",
                 choices=("separate", "joint"))


def domain_features(model: nn.Module, xs: Tensor, xt: Tensor, domain: str, joint: bool) -> Tensor:
    """G's features of the ``domain`` ("source" or "target") batch."""
    if not joint:
        return model.encoder(xs if domain == "source" else xt)
    f = model.encoder(torch.cat([xs, xt]))
    return f[: len(xs)] if domain == "source" else f[len(xs):]
