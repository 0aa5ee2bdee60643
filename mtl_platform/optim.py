"""Optimizers (sgd, adam, adamw) with per-group learning-rate multipliers, and schedules:
per epoch (step, cosine) or per training iteration (inv)."""
from __future__ import annotations

from typing import Iterable

import torch

from .errors import UserError


def param_groups(params: list, groups: dict | None, mult: dict) -> list:
    """``params`` split into optimizer groups: each named group at lr × its multiplier, the
    rest at the base lr (``lr_scale`` 1)."""
    if not mult or groups is None:  # no multipliers, or a stage's optimizer without the domain's groups
        return [{"params": params, "lr_scale": 1.0}]
    claimed: dict[int, float] = {}
    for name, factor in mult.items():
        for p in groups[name]:
            claimed[id(p)] = float(factor)
    out: dict[float, list] = {}
    for p in params:
        out.setdefault(claimed.get(id(p), 1.0), []).append(p)
    return [{"params": ps, "lr_scale": scale} for scale, ps in out.items()]


def build_optimizer(cfg: dict, params: Iterable, groups: dict | None = None) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    name, lr, wd = cfg["name"], cfg["lr"], cfg["weight_decay"]
    params = [{"params": g["params"], "lr": lr * g["lr_scale"]}
              for g in param_groups(params, groups, cfg.get("lr_mult") or {})]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg["momentum"], nesterov=cfg["nesterov"],
                               weight_decay=wd)
    betas = tuple(cfg["betas"])
    if len(betas) != 2:
        raise UserError(f"optimizer.betas: got {list(betas)}, expected two floats [β₁, β₂] in [0, 1)")
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=wd)
    raise ValueError(f"unknown optimizer {name!r}")  # the config validated the name


def build_scheduler(cfg: dict, optimizer: torch.optim.Optimizer, epochs: int):
    name = cfg["name"]
    if name == "none":
        return None
    if name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg["step_size"], gamma=cfg["gamma"])
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=cfg["eta_min"])
    if name == "inv":
        gamma, power = cfg["inv_gamma"], cfg["inv_power"]
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: (1 + gamma * i) ** (-power))
        scheduler.per_step = True  # the trainer steps it after every training iteration
        return scheduler
    raise ValueError(f"unknown scheduler {name!r}")
