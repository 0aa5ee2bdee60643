"""Whole-split confusion matrices and the mean IoU drawn from them (segmentation, saliency).

Counting uses ``scatter_add_`` into a fixed-size buffer rather than ``torch.bincount``: the
result is the same, but CUDA's bincount reads its input's min and max back to the host (a
sync); ignored pixels go to one extra "dump" bin, so no boolean indexing is needed.
"""
from __future__ import annotations

import torch
from torch import Tensor


def confusion(labels: Tensor, target: Tensor, classes: int, ignore_index: int) -> Tensor:
    """(classes, classes) counts, rows = target, columns = predicted ``labels``; pixels whose
    target is ``ignore_index`` are not counted."""
    valid = target != ignore_index
    cell = torch.where(valid, target * classes + labels, classes * classes).reshape(-1)
    counts = torch.zeros(classes * classes + 1, dtype=torch.long, device=target.device)
    counts.scatter_add_(0, cell, torch.ones_like(cell))
    return counts[:classes * classes].reshape(classes, classes)


def mean_iou(conf: Tensor) -> Tensor:
    """Mean over classes of TP / (TP + FP + FN); a class with no pixel in the targets or the
    predictions (union 0) has no IoU and is left out. Returns a 0-d float64 tensor."""
    conf = conf.double()
    tp = conf.diagonal()
    union = conf.sum(0) + conf.sum(1) - tp
    present = union > 0
    return torch.where(present, tp / union.clamp_min(1), 0).sum() / present.sum()
