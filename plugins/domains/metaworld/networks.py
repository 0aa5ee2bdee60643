"""The actor's and the critics' encoders and heads (the factories every architecture is built from)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl_platform.contracts.encoder import StagedEncoder


def mlp_encoder(inputs: int, hidden: int, layers: int) -> StagedEncoder:
    """``layers`` stages, each one fully connected layer of ``hidden`` units and a ReLU (mtrl's
    and the CoNAL thesis's "module layers" of 400 units)."""
    stages, width = [], inputs
    for _ in range(layers):
        stages.append(nn.Sequential(nn.Linear(width, hidden), nn.ReLU()))
        width = hidden
    return StagedEncoder(stages, (hidden,), [(hidden,)] * layers)


def linear_head(hidden: int, outputs: int) -> nn.Module:
    return nn.Linear(hidden, outputs)


def squash_log_std(raw: Tensor, low: float, high: float) -> Tensor:
    """A head's raw log-std mapped smoothly into [low, high] (tanh, then affine)."""
    return low + 0.5 * (high - low) * (torch.tanh(raw) + 1)


def tanh_gaussian(out: Tensor, noise: Tensor | None, low: float, high: float) -> tuple[Tensor, Tensor]:
    """The SAC policy (Haarnoja et al. 2018, §4.2 and App. C): a = tanh(μ + σ·ε), with
    log π(a|s) = log N(u; μ, σ) − Σ_i log(1 − tanh²(u_i)), the correction computed stably as
    2(log 2 − u − softplus(−2u)). ``out`` holds [μ, raw log σ] of each action dimension;
    ``noise`` ε ~ N(0, I), or None for the deterministic action tanh(μ) (log-prob then 0)."""
    mean, raw = out.chunk(2, dim=-1)
    if noise is None:
        return torch.tanh(mean), torch.zeros(mean.shape[:-1], device=mean.device, dtype=mean.dtype)
    log_std = squash_log_std(raw, low, high)
    u = mean + log_std.exp() * noise
    gaussian = (-0.5 * noise.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
    correction = (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1)
    return torch.tanh(u), gaussian - correction
