"""Optimizers (sgd, adam, adamw) and per-epoch schedules (step, cosine, none)."""
from __future__ import annotations

from typing import Iterable

import torch


def build_optimizer(cfg: dict, params: Iterable) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    name, lr, wd = cfg["name"], cfg["lr"], cfg["weight_decay"]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg["momentum"], nesterov=cfg["nesterov"],
                               weight_decay=wd)
    betas = tuple(cfg["betas"])
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
    raise ValueError(f"unknown scheduler {name!r}")
