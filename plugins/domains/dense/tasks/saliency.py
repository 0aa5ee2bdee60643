"""Saliency as 2-class per-pixel classification: cross-entropy, mIoU and maxF.

Definitions: thesis spec §1.1 — saliency trained with cross-entropy as a 2-class per-pixel
classification [RECON], evaluated with mIoU and maxF (labels and protocol from ASTMT, Maninis
et al., CVPR 2019); the F-measure with β² = 0.3 is the saliency convention of Achanta et al.
(CVPR 2009), also used by ASTMT.

* ``miou`` ↑: mean IoU of the two classes (background, foreground) at the argmax, from the
  split's 2×2 confusion matrix (a class absent from both targets and predictions over the
  split is left out of the mean, as for segmentation).
* ``maxf`` ↑ = max over the 255 thresholds τ_k = k/255 (k = 1..255) of
  F_β = (1 + β²)·P·R / (β²·P + R), where a pixel is predicted salient when its foreground
  probability softmax(pred)[:, 1] ≥ τ_k. Precision P = TP/PP and recall R = TP/FG use counts
  over the WHOLE split (ASTMT averages per-image precision and recall instead): the device
  keeps a 256-bin histogram of ⌊255·p⌋ for the background and for the foreground pixels, so
  p ≥ k/255 ⇔ ⌊255·p⌋ ≥ k (up to float rounding) and TP_k, PP_k are suffix sums of the
  foreground and all-pixel histograms; FG is the foreground histogram's total. P (R) is taken
  as 0 where PP (FG) is 0, and F as 0 where P + R is 0.

Pixels whose target is ``ignore_index`` are left out of the loss and of every metric. Counting
uses ``scatter_add_`` into fixed-size buffers instead of ``torch.bincount`` (whose CUDA kernel
syncs with the host); ignored pixels go to an extra dump bin.
"""
from __future__ import annotations

import torch
from torch import Tensor

from mtl_platform.contracts import Metric

from .confusion import confusion, mean_iou
from .segmentation import SegmentationTask

BETA2 = 0.3
LEVELS = 255  # thresholds k/255, k = 1..255; histogram bins 0..255


class SaliencyTask(SegmentationTask):
    """Pred logits (B, 2, H, W); target int64 (B, H, W) in {0, 1}, ``ignore_index`` ignored.
    The loss and input checks are 2-class segmentation's; the metrics are mIoU and maxF."""

    def __init__(self, name: str, ignore_index: int = -1):
        super().__init__(name, 2, ignore_index)
        self.metrics = (Metric("miou", higher_is_better=True), Metric("maxf", higher_is_better=True))

    def metric_sums(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        self._check(pred, target)
        pred = pred.detach().float()
        valid = target != self.ignore_index
        level = (pred.softmax(1)[:, 1] * LEVELS).long().clamp(0, LEVELS)
        # bins 0..255: background pixels, 256..511: foreground pixels, 512: ignored
        index = torch.where(valid, target * (LEVELS + 1) + level, 2 * (LEVELS + 1)).reshape(-1)
        hist = torch.zeros(2 * (LEVELS + 1) + 1, dtype=torch.long, device=target.device)
        hist.scatter_add_(0, index, torch.ones_like(index))
        return {"confusion": confusion(pred.argmax(1), target, 2, self.ignore_index),
                "hist": hist[:2 * (LEVELS + 1)].reshape(2, LEVELS + 1)}

    def finalize(self, sums: dict[str, Tensor]) -> dict[str, float]:
        miou = mean_iou(sums["confusion"])

        hist = sums["hist"].double()
        # suffix sums: [k] = pixels with level >= k; thresholds k = 1..255
        predicted = hist.sum(0).flip(0).cumsum(0).flip(0)[1:]
        true_pos = hist[1].flip(0).cumsum(0).flip(0)[1:]
        foreground = hist[1].sum()
        precision = torch.where(predicted > 0, true_pos / predicted.clamp_min(1), 0)
        recall = torch.where(foreground > 0, true_pos / foreground.clamp_min(1), 0)
        denom = BETA2 * precision + recall
        f = torch.where(denom > 0, (1 + BETA2) * precision * recall / denom.clamp_min(1e-300), 0)
        miou, maxf = torch.stack([miou, f.max()]).tolist()
        return {"miou": miou, "maxf": maxf}
