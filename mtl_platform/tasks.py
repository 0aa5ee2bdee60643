"""Reusable task kinds. A domain builds its tasks from these (or its own subclasses)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .contracts.task import Metric, Task


class ClassificationTask(Task):
    """Cross-entropy classification; accuracy counts in Δp, the loss is reported only."""

    metrics = (Metric("accuracy", higher_is_better=True),
               Metric("loss", higher_is_better=False, in_delta_p=False))

    def __init__(self, name: str, num_classes: int):
        super().__init__(name)
        self.num_classes = num_classes

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(pred, target)

    def sample_losses(self, pred: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(pred, target, reduction="none")

    def metric_sums(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        return {"correct": (pred.argmax(1) == target).sum(),
                "loss": F.cross_entropy(pred, target, reduction="sum"),
                "count": torch.tensor(target.shape[0], device=target.device)}

    def finalize(self, sums: dict[str, Tensor]) -> dict[str, float]:
        values = torch.stack([sums["correct"].double(), sums["loss"].double(), sums["count"].double()]).tolist()
        correct, loss, count = values
        return {"accuracy": correct / count, "loss": loss / count}


class RegressionTask(Task):
    """Scalar regression with mean squared error; MSE counts in Δp, MAE is reported only."""

    metrics = (Metric("mse", higher_is_better=False),
               Metric("mae", higher_is_better=False, in_delta_p=False))

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(pred.reshape(target.shape), target)

    def sample_losses(self, pred: Tensor, target: Tensor) -> Tensor:
        err = (pred.reshape(target.shape) - target).pow(2)
        return err.reshape(err.shape[0], -1).mean(1)

    def metric_sums(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        err = pred.reshape(target.shape) - target
        return {"se": err.pow(2).sum(), "ae": err.abs().sum(),
                "count": torch.tensor(target.numel(), device=target.device)}

    def finalize(self, sums: dict[str, Tensor]) -> dict[str, float]:
        se, ae, count = torch.stack([sums["se"].double(), sums["ae"].double(), sums["count"].double()]).tolist()
        return {"mse": se / count, "mae": ae / count}
