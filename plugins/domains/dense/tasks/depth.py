"""Depth estimation: L1 loss, absolute and relative error over valid pixels.

Definitions: thesis spec §1.1 (depth "Abs Err / Rel Err in terms of the L1 norm", L1 loss),
following MTAN (Liu et al., CVPR 2019) and LibMTL: valid pixels are those with a non-zero
(and finite) target; ``abs_err`` ↓ = Σ|ŷ − y| / n_valid and ``rel_err`` ↓ = Σ(|ŷ − y| / y) / n_valid.
Unlike MTAN/LibMTL, which average per-batch ratios, both sums and the count run over the whole
split (so a split's value does not depend on how it is batched). A split with no valid pixel
gives NaN metrics; a batch with no valid pixel gives a loss of 0 that is still attached to pred.
"""
from __future__ import annotations

import torch
from torch import Tensor

from mtl_platform.contracts import Metric, Task


class DepthTask(Task):
    """Per-pixel depth; pred and target float (B, 1, H, W), target 0 (or non-finite) = invalid."""

    metrics = (Metric("abs_err", higher_is_better=False),
               Metric("rel_err", higher_is_better=False))

    def _errors(self, pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Valid mask, the target with invalid pixels set to 1 and |ŷ − y| (0 where invalid)."""
        if pred.shape != target.shape:
            raise ValueError(f"task {self.name!r}: pred {tuple(pred.shape)} and target "
                             f"{tuple(target.shape)} must have the same shape")
        valid = (target != 0) & torch.isfinite(target)
        # invalid targets are replaced before the subtraction so that NaN/inf never reach
        # the graph (0 * NaN in the backward pass would poison the gradient)
        safe = torch.where(valid, target, 1)
        err = torch.where(valid, (pred - safe).abs(), 0)
        return valid, safe, err

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        valid, _, err = self._errors(pred, target)
        return err.sum() / valid.sum().clamp_min(1)

    def metric_sums(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        valid, safe, err = self._errors(pred.detach().float(), target.float())
        return {"abs": err.sum(), "rel": (err / safe).sum(), "count": valid.sum()}

    def finalize(self, sums: dict[str, Tensor]) -> dict[str, float]:
        count = sums["count"].double()
        abs_err, rel_err = torch.stack([sums["abs"].double() / count,
                                        sums["rel"].double() / count]).tolist()
        return {"abs_err": abs_err, "rel_err": rel_err}
