"""The two tasks of UDA: ``alignment`` (trained, not evaluated) and target ``classification``."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mtl_platform.contracts import Metric, Task


class AlignmentTask(Task):
    """The method's alignment loss L1; it has no metric (nothing to evaluate on the target)."""

    metrics = ()


class TargetClassification(Task):
    """Classification of the target domain: ``accuracy`` ↑ (overall) and ``class_accuracy`` ↑
    (mean per-class recall, VisDA's measure) from the whole split's confusion counts; the
    cross-entropy ``loss`` is reported only. The training loss is the source cross-entropy."""

    metrics = (Metric("accuracy", higher_is_better=True), Metric("class_accuracy", higher_is_better=True),
               Metric("loss", higher_is_better=False, in_delta_p=False))

    def __init__(self, name: str, num_classes: int):
        super().__init__(name)
        self.num_classes = int(num_classes)

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(pred, target)

    def metric_sums(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        c = self.num_classes
        cell = target * c + pred.argmax(1)
        counts = torch.zeros(c * c, dtype=torch.long, device=target.device).scatter_add_(0, cell, torch.ones_like(cell))
        return {"confusion": counts.reshape(c, c), "loss": F.cross_entropy(pred, target, reduction="sum")}

    def finalize(self, sums: dict[str, Tensor]) -> dict[str, float]:
        conf = sums["confusion"].double()
        count = conf.sum()
        per_class = conf.diagonal() / conf.sum(1).clamp_min(1)
        present = conf.sum(1) > 0
        values = torch.stack([conf.diagonal().sum() / count, per_class[present].mean(),
                              sums["loss"].double() / count]).tolist()
        return dict(zip(("accuracy", "class_accuracy", "loss"), values))
