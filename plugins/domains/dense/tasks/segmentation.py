"""Semantic (and human-parts) segmentation: per-pixel cross-entropy, mIoU and pixel accuracy/error.

Definitions: thesis spec §1.1 (seg metrics mIoU and Pix Acc (Ch.5) or Pix Err (Ch.6); CE loss),
following MTAN (Liu et al., CVPR 2019) and LibMTL, whose mIoU comes from a confusion matrix
accumulated over the whole evaluation split.

* ``miou`` ↑: per-class IoU = TP / (TP + FP + FN) from the split's (C, C) confusion matrix
  (rows = target, columns = argmax prediction). A class whose union TP + FP + FN is 0 — absent
  from both the targets and the predictions over the whole split — has no defined IoU and is
  left out of the mean; a class that is only predicted (or only labelled) has IoU 0 and counts.
* ``pixel_accuracy`` ↑ (``pixel_metric="accuracy"``) or ``pixel_error`` ↓ = 1 − accuracy
  (``pixel_metric="error"``, thesis Ch.6 following AdaShare). Fractions, not percent.
* ``loss`` ↓ (reported only, not in Δp): mean cross-entropy over the valid pixels of the split.

Pixels whose target is ``ignore_index`` are left out of the loss and of every metric. A split
with no valid pixel gives NaN metrics.

Counting: see :mod:`.confusion` (no host synchronisation on CUDA).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mtl_platform.contracts import Metric, Task

from .confusion import confusion, mean_iou

PIXEL_METRICS = ("accuracy", "error")


class SegmentationTask(Task):
    """Per-pixel C-way classification; pred logits (B, C, H, W), target int64 (B, H, W)."""

    def __init__(self, name: str, num_classes: int, ignore_index: int = -1,
                 pixel_metric: str = "accuracy"):
        super().__init__(name)
        if int(num_classes) < 1:
            raise ValueError(f"task {name!r}: num_classes must be >= 1, got {num_classes}")
        if pixel_metric not in PIXEL_METRICS:
            raise ValueError(f"task {name!r}: pixel_metric must be one of {PIXEL_METRICS}, "
                             f"got {pixel_metric!r}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.pixel_metric = pixel_metric
        pixel = (Metric("pixel_accuracy", higher_is_better=True) if pixel_metric == "accuracy"
                 else Metric("pixel_error", higher_is_better=False))
        self.metrics = (Metric("miou", higher_is_better=True), pixel,
                        Metric("loss", higher_is_better=False, in_delta_p=False))

    def _check(self, pred: Tensor, target: Tensor) -> None:
        expected = (target.shape[0], self.num_classes, *target.shape[1:])
        if target.dim() != 3 or tuple(pred.shape) != expected:
            raise ValueError(f"task {self.name!r}: pred {tuple(pred.shape)} and target "
                             f"{tuple(target.shape)} do not match (B, {self.num_classes}, H, W) "
                             f"and (B, H, W)")

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        self._check(pred, target)
        ce = F.cross_entropy(pred, target, ignore_index=self.ignore_index, reduction="sum")
        # a batch with no valid pixel gives 0 (still attached to pred), not 0/0
        return ce / (target != self.ignore_index).sum().clamp_min(1)

    def metric_sums(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        self._check(pred, target)
        pred = pred.detach()
        c = self.num_classes
        valid = target != self.ignore_index
        ce = F.cross_entropy(pred.float(), target, ignore_index=self.ignore_index, reduction="sum")
        return {"confusion": confusion(pred.argmax(1), target, c, self.ignore_index), "ce": ce,
                "count": valid.sum()}

    def finalize(self, sums: dict[str, Tensor]) -> dict[str, float]:
        conf = sums["confusion"].double()
        tp = conf.diagonal()
        miou = mean_iou(conf)
        count = sums["count"].double()
        accuracy = tp.sum() / count
        pixel = accuracy if self.pixel_metric == "accuracy" else 1 - accuracy
        values = torch.stack([miou, pixel, sums["ce"].double() / count]).tolist()
        return {m.name: v for m, v in zip(self.metrics, values)}
