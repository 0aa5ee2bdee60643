"""The domain discriminator of DANN and CDAN (Ganin et al. 2016; Long et al. 2018): an MLP
with two hidden layers (ReLU, dropout 0.5 in the original code; BatchNorm as in tllib),
one logit: source (1) vs target (0)."""
from __future__ import annotations

from torch import nn


def domain_discriminator(features: int, hidden: int = 1024) -> nn.Module:
    return nn.Sequential(
        nn.Linear(features, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
        nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
        nn.Linear(hidden, 1))
