"""Tiny models for the closure-method tests (tests/plugins/closures/, tests/core/gradients/
test_perturb.py): quadratic objectives behind the real seam, and a net with BatchNorm and dropout."""
from __future__ import annotations

import torch
from torch import nn

from mtl_platform.contracts import LossClosure
from mtl_platform.gradients import GradientEngine
from mtl_platform_plugins.weightings.ew import EW


class Quadratics(nn.Module):
    """Task i's loss is ½ xᵀA_i x − b_iᵀx with x = (θ, φ_i): θ shared, φ_i (possibly empty) task
    i's own block. ``seen`` records θ at every evaluation and ``grads`` every gradient reaching θ."""

    def __init__(self, tasks, theta, A, b, own=None):
        super().__init__()
        self.tasks = list(tasks)
        self.theta = nn.Parameter(torch.tensor(theta, dtype=torch.float64))
        own = own or {t: [] for t in tasks}
        self.own = nn.ParameterDict({t: nn.Parameter(torch.tensor(own[t], dtype=torch.float64)) for t in tasks})
        self.A = {t: torch.tensor(A[t], dtype=torch.float64) for t in tasks}
        self.b = {t: torch.tensor(b[t], dtype=torch.float64) for t in tasks}
        self.seen: list[torch.Tensor] = []
        self.grads: list[torch.Tensor] = []
        self.theta.register_hook(lambda g: self.grads.append(g.detach().clone()))

    def x(self, t):
        return torch.cat([self.theta, self.own[t]])

    def losses(self):
        self.seen.append(self.theta.detach().clone())
        return {t: 0.5 * self.x(t) @ self.A[t] @ self.x(t) - self.b[t] @ self.x(t) for t in self.tasks}

    def shared_parameters(self):
        return [self.theta]

    def task_parameters(self, task):
        return [self.own[task]] if self.own[task].numel() else []


def closure_of(model) -> LossClosure:
    return LossClosure(model.losses, "cpu")


def engine_of(model, weighting=None):
    return GradientEngine(model, weighting or EW(model.tasks), model.tasks)


class RecordingSGD(torch.optim.SGD):
    """Plain SGD that keeps the parameters and gradients it saw when it stepped."""

    def step(self, closure=None):
        params = [p for g in self.param_groups for p in g["params"]]
        self.seen_params = [p.detach().clone() for p in params]
        self.seen_grads = [None if p.grad is None else p.grad.detach().clone() for p in params]
        return super().step(closure)


class NormDropNet(nn.Module):
    """A shared trunk with BatchNorm and dropout, two linear heads; losses on a fixed batch."""

    tasks = ["a", "b"]

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.trunk = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5))
        self.heads = nn.ModuleDict({t: nn.Linear(8, 1) for t in self.tasks})
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(16, 5, generator=g)
        self.y = torch.randn(16, 2, generator=g)

    def forward(self, x):
        z = self.trunk(x)
        return {t: h(z).squeeze(-1) for t, h in self.heads.items()}

    def losses(self):
        out = self(self.x)
        return {t: (out[t] - self.y[:, i]).pow(2).mean() for i, t in enumerate(self.tasks)}

    def shared_parameters(self):
        return list(self.trunk.parameters())

    def task_parameters(self, task):
        return list(self.heads[task].parameters())
