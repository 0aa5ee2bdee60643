"""Several classifiers on the generator's features, and the discrepancy between them (MCD,
Saito et al., CVPR 2018; DWL, Xiao & Zhang, CVPR 2021)."""
from __future__ import annotations

import torch
from torch import Tensor, nn


def classifier(features: int, classes: int, hidden: int, depth: int) -> nn.Sequential:
    """``depth`` hidden layers (dropout, linear, BatchNorm, ReLU), then the logits:
    MCD's digit classifier and tllib's ``ImageClassifierHead`` have ``depth`` 2."""
    layers: list[nn.Module] = []
    width = features
    for _ in range(depth):
        layers += [nn.Dropout(0.5), nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.ReLU()]
        width = hidden
    return nn.Sequential(*layers, nn.Linear(width, classes))


class Classifiers(nn.Module):
    """``count`` independent classifiers (``classifier``). ``forward`` gives the first one's
    logits — the classifier evaluated — and ``all`` every classifier's logits."""

    def __init__(self, features: int, classes: int, hidden: int, count: int, depth: int = 1):
        super().__init__()
        self.members = nn.ModuleList(classifier(features, classes, hidden, depth) for _ in range(count))

    def forward(self, f: Tensor) -> Tensor:
        return self.members[0](f)

    def all(self, f: Tensor) -> list[Tensor]:
        return [m(f) for m in self.members]


def discrepancy(a: Tensor, b: Tensor) -> Tensor:
    """Mean |softmax(a) − softmax(b)| (Saito et al. 2018, Eq. 1)."""
    return (a.softmax(1) - b.softmax(1)).abs().mean()


def entropy(logits: Tensor) -> Tensor:
    """Mean Shannon entropy (nats) of the predicted class distributions."""
    p = logits.softmax(1)
    return -(p * torch.log(p + 1e-5)).sum(1).mean()
