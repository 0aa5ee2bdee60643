"""TIRG's retrieval losses over a batch of (composed query, target) pairs (Vo et al., "Composing
Text and Image for Image Retrieval - An Empirical Odyssey", CVPR 2019, §3.3).

Both take the composed queries ``q`` (B, d) and target embeddings ``t`` (B, d), already
L2-normalised and scaled by the learned scale (``model.Normalise``); pair i is the positive of
query i and every other target of the batch a negative.

- ``batch_classification``: softmax cross-entropy over the batch, logits qᵢ·tⱼ, label i — TIRG's
  loss of choice for CSS (§3.3, "classification over the batch").
- ``soft_triplet``: mean over i ≠ j of log(1 + exp(‖qᵢ − tᵢ‖² − ‖qᵢ − tⱼ‖²)), the soft-margin
  triplet form of §3.3 with every other target of the batch as a negative (the spec's GH code
  calls its first task's loss the "clean soft-triplet loss", gradients.md §1.12).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

LOSSES = ("batch_classification", "soft_triplet")


def batch_classification(q: Tensor, t: Tensor) -> Tensor:
    logits = q @ t.T
    return F.cross_entropy(logits, torch.arange(len(q), device=q.device))


def soft_triplet(q: Tensor, t: Tensor) -> Tensor:
    d = torch.cdist(q, t).pow(2)                      # (B, B): ‖qᵢ − tⱼ‖²
    margin = d.diagonal()[:, None] - d                # positive minus negative distance
    off = ~torch.eye(len(q), dtype=torch.bool, device=q.device)
    return F.softplus(margin[off]).mean()


def retrieval_loss(name: str):
    return {"batch_classification": batch_classification, "soft_triplet": soft_triplet}[name]
