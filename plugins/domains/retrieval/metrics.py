"""Recall@K of composed retrieval (TIRG's CSS protocol; spec gradients.md §1.12: R@N, N = 1, 5, 10).

For each query the gallery is every image of the split except the query image itself; images
are ranked by the inner product of their normalised embedding with the composed query; the query
is a hit at K when the top K hold an image whose scene equals the target's. Sums of hits are
accumulated on the device (no host transfer per batch) and divided by the number of queries once.
"""
from __future__ import annotations

import torch
from torch import Tensor

from mtl_platform.contracts.task import Metric, Task

KS = (1, 5, 10)


def recall_hits(queries: Tensor, gallery: Tensor, gallery_scenes: Tensor, exclude: Tensor, target_scenes: Tensor,
                ks=KS) -> Tensor:
    """Hits (len(ks),) of a batch of queries (b, d) against ``gallery`` (N, d): query r is a hit at
    K when one of its K best-scoring gallery images other than ``exclude[r]`` has scene
    ``target_scenes[r]``. Ties are broken by ``torch.topk``."""
    scores = queries @ gallery.T                                         # (b, N)
    scores.scatter_(1, exclude.view(-1, 1), float("-inf"))              # the query image is not in its gallery
    top = scores.topk(min(max(ks), gallery.shape[0] - 1), dim=1).indices  # (b, K)
    correct = gallery_scenes[top] == target_scenes.view(-1, 1)          # (b, K)
    first = correct.cumsum(1) > 0                                       # a hit within the first k
    return torch.stack([first[:, min(k, first.shape[1]) - 1].sum() for k in ks])


class RecallTask(Task):
    """R@1, R@5, R@10 (fractions of the queries; all count in Δp and η) on one kind of query:
    clean, or perturbed by one evaluation attack."""

    metrics = tuple(Metric(f"R@{k}", higher_is_better=True) for k in KS)

    def metric_sums(self, hits: Tensor, count: Tensor) -> dict[str, Tensor]:
        return {**{f"R@{k}": hits[i] for i, k in enumerate(KS)}, "count": count}

    def finalize(self, sums: dict[str, Tensor]) -> dict[str, float]:
        values = torch.stack([sums[f"R@{k}"] for k in KS]).double() / sums["count"]
        return dict(zip((f"R@{k}" for k in KS), values.tolist()))
