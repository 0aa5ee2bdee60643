"""Per-pixel L1 regression (Taskonomy keypoint and edge detection): L1 loss and absolute error.

Definitions: thesis spec §1.1 — Taskonomy keypoint and edge detection use an L1 loss and are
evaluated by their absolute (L1) error (task choice following Standley et al., ICML 2020).
``abs_err`` ↓ = Σ|ŷ − y| / n_valid over the whole split, where a pixel is valid unless its
target equals ``ignore_value`` (every pixel is valid when ``ignore_value`` is None). A split
with no valid pixel gives NaN; a batch with none gives a loss of 0 still attached to pred.
"""
from __future__ import annotations

import torch
from torch import Tensor

from mtl_platform.contracts import Metric, Task


class PixelL1Task(Task):
    """Pred and target float (B, 1, H, W); pixels whose target is ``ignore_value`` are ignored."""

    metrics = (Metric("abs_err", higher_is_better=False),)

    def __init__(self, name: str, ignore_value: float | None = None):
        super().__init__(name)
        self.ignore_value = None if ignore_value is None else float(ignore_value)

    def _errors(self, pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Valid mask and |ŷ − y| (0 where invalid)."""
        if pred.shape != target.shape:
            raise ValueError(f"task {self.name!r}: pred {tuple(pred.shape)} and target "
                             f"{tuple(target.shape)} must have the same shape")
        if self.ignore_value is None:
            valid = torch.ones_like(target, dtype=torch.bool)
        else:
            valid = target != self.ignore_value
        return valid, torch.where(valid, (pred - target).abs(), 0)

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        valid, err = self._errors(pred, target)
        return err.sum() / valid.sum().clamp_min(1)

    def metric_sums(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        valid, err = self._errors(pred.detach().float(), target.float())
        return {"abs": err.sum(), "count": valid.sum()}

    def finalize(self, sums: dict[str, Tensor]) -> dict[str, float]:
        (abs_err,) = (sums["abs"].double() / sums["count"].double()).reshape(1).tolist()
        return {"abs_err": abs_err}
