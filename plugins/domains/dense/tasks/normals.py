"""Surface-normal estimation: cosine loss and angle-error statistics over valid pixels.

Definitions: thesis spec §1.1 — loss "cosine similarity loss", implemented as 1 − cos(n̂, n)
averaged over valid pixels [RECON]; metrics the angle between predicted and ground-truth
normals, its mean and median (NYUv2, Taskonomy; MTAN, Liu et al., CVPR 2019, and LibMTL) or
its mean and RMSE (PASCAL-Context; ASTMT, Maninis et al., CVPR 2019), and the fraction of
pixels with an angle below 11.25°, 22.5° and 30°.

Valid pixels have a ground-truth vector of non-zero norm. Both vectors are normalised, and the
angle is acos(clamp(cos, −1, 1)) in degrees.

* ``mean`` ↓ = Σ angle / n_valid over the split.
* ``median`` ↓ (``spread="median"``): the median over the WHOLE split is accumulated on the
  device as a histogram of angles with 18,000 bins of 0.01° over [0°, 180°] (bin i holds
  [0.01·i, 0.01·(i+1)), 180° goes in the last bin). ``finalize`` finds, from the cumulative
  counts, the bins holding the middle order statistics (ranks ⌊(n+1)/2⌋ and ⌊n/2⌋+1, the same
  rank for odd n) and reports the mean of their bin CENTRES — i.e. ``numpy.median``'s
  convention, to within half a bin (0.005°); no interpolation inside a bin.
* ``rmse`` ↓ (``spread="rmse"``) = sqrt(Σ angle² / n_valid).
* ``within_11.25``, ``within_22.5``, ``within_30`` ↑: fractions (not percent) of valid pixels
  whose angle is strictly below the threshold (MTAN's ``error < 11.25``).

A split with no valid pixel gives NaN metrics; a batch with none gives a loss of 0 still
attached to pred. Counting uses ``scatter_add_`` into a fixed-size buffer (invalid pixels go
to an extra dump bin) instead of ``torch.bincount``, whose CUDA kernel syncs with the host.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mtl_platform.contracts import Metric, Task

SPREADS = ("median", "rmse")
THRESHOLDS = (11.25, 22.5, 30.0)
BIN_WIDTH = 0.01  # degrees
NUM_BINS = 18_000  # 180° / 0.01°


class NormalTask(Task):
    """Per-pixel unit normals; pred and target float (B, 3, H, W), all-zero target = invalid."""

    def __init__(self, name: str, spread: str = "median"):
        super().__init__(name)
        if spread not in SPREADS:
            raise ValueError(f"task {name!r}: spread must be one of {SPREADS}, got {spread!r}")
        self.spread = spread
        self.metrics = (Metric("mean", higher_is_better=False),
                        Metric(spread, higher_is_better=False),
                        *(Metric(f"within_{t:g}", higher_is_better=True) for t in THRESHOLDS))

    def _cosine(self, pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Valid mask (B, H, W) and cos(n̂, n) per pixel (0 where invalid)."""
        if pred.shape != target.shape or pred.dim() != 4 or pred.shape[1] != 3:
            raise ValueError(f"task {self.name!r}: pred {tuple(pred.shape)} and target "
                             f"{tuple(target.shape)} must both be (B, 3, H, W)")
        valid = target.norm(dim=1) > 0
        cos = (F.normalize(pred, dim=1) * F.normalize(target, dim=1)).sum(1)
        return valid, torch.where(valid, cos, 0)

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        valid, cos = self._cosine(pred, target)
        return torch.where(valid, 1 - cos, 0).sum() / valid.sum().clamp_min(1)

    def metric_sums(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        valid, cos = self._cosine(pred.detach().float(), target.float())
        angle = torch.rad2deg(torch.acos(cos.clamp(-1, 1)))
        angle = torch.where(valid, angle, 0)
        sums = {"sum": angle.sum(), "count": valid.sum()}
        for t in THRESHOLDS:
            sums[f"within_{t:g}"] = (valid & (angle < t)).sum()
        if self.spread == "rmse":
            sums["sq_sum"] = angle.square().sum()
        else:
            index = (angle * (1 / BIN_WIDTH)).long().clamp(0, NUM_BINS - 1)
            index = torch.where(valid, index, NUM_BINS).reshape(-1)
            hist = torch.zeros(NUM_BINS + 1, dtype=torch.long, device=index.device)
            hist.scatter_add_(0, index, torch.ones_like(index))
            sums["hist"] = hist[:NUM_BINS]
        return sums

    def _median(self, hist: Tensor) -> Tensor:
        cumulative = hist.cumsum(0)
        n = cumulative[-1]
        ranks = torch.stack([(n + 1) // 2, n // 2 + 1])
        bins = torch.searchsorted(cumulative, ranks).clamp_max(NUM_BINS - 1)
        median = ((bins.double() + 0.5) * BIN_WIDTH).mean()
        return torch.where(n > 0, median, torch.nan)

    def finalize(self, sums: dict[str, Tensor]) -> dict[str, float]:
        count = sums["count"].double()
        spread = (torch.sqrt(sums["sq_sum"].double() / count) if self.spread == "rmse"
                  else self._median(sums["hist"]))
        values = torch.stack([sums["sum"].double() / count, spread,
                              *(sums[f"within_{t:g}"].double() / count for t in THRESHOLDS)])
        return {m.name: v for m, v in zip(self.metrics, values.tolist())}
