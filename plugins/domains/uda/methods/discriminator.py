"""The domain discriminator of DANN and CDAN (Ganin et al. 2016; Long et al. 2018): an MLP
with two hidden layers (ReLU, dropout 0.5 in the original code; BatchNorm as in tllib),
one logit: source (1) vs target (0)."""
from __future__ import annotations

import torch
from torch import Tensor, nn


def domain_discriminator(features: int, hidden: int = 1024) -> nn.Module:
    return nn.Sequential(
        nn.Linear(features, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
        nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
        nn.Linear(hidden, 1))


def domain_labels(n_source: int, n_target: int, device) -> Tensor:
    """1 for the first ``n_source`` samples (source), 0 for the next ``n_target`` (target)."""
    return torch.cat([torch.ones(n_source, device=device), torch.zeros(n_target, device=device)])
