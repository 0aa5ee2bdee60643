"""DWL's dynamic weight T between alignment and discriminability (Xiao & Zhang, CVPR 2021,
§3.2–3.3), from statistics accumulated over an epoch on the device.

* Degree of alignment: the linear MMD A = ‖mean f_s − mean f_t‖² (the DWL code's
  ``mean((f_s − f_t)(f_s − f_t)ᵀ)`` over paired features is exactly this).
* Discriminability: the LDA criterion J = Σ of the top K−1 eigenvalues of (S_w + εI)⁻¹ S_b,
  divided by K, on the source features with their labels and on the target features with the
  classifier's pseudo-labels; J = min(J_s, J_t). S_b has rank ≤ K−1, so that sum is the trace,
  solved in torch without an eigendecomposition.
* Both are min–max normalised over the epochs seen so far (A's range starts at 0, its lower
  bound; J's at the first epoch's pair), and T = Â / (Â + 1 − Ĵ): poor alignment raises the
  weight of the alignment loss, poor discriminability that of the discriminability loss.
  T = ½ until the first epoch ends (the DWL code's start).

The scatter matrices come from per-class counts, sums and the second moment Σ f fᵀ (float64),
so nothing is kept per sample and nothing leaves the device. Everything is a buffer: a resumed
run continues with the same statistics and weight.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

EPS = 1e-6


def linear_mmd(sum_s: Tensor, n_s: Tensor, sum_t: Tensor, n_t: Tensor) -> Tensor:
    """‖sum_s/n_s − sum_t/n_t‖²."""
    return (sum_s / n_s - sum_t / n_t).pow(2).sum()


def lda_criterion(counts: Tensor, sums: Tensor, moment: Tensor, classes: int) -> Tensor:
    """trace((S_w + εI)⁻¹ S_b) / K from per-class ``counts`` (K), ``sums`` (K×d) and the second
    moment Σ f fᵀ (d×d); classes without samples are left out."""
    present = counts > 0
    n = counts.sum()
    nc = torch.where(present, counts, torch.ones_like(counts))
    means = sums / nc[:, None]
    mean = sums.sum(0) / n
    weights = torch.where(present, counts, torch.zeros_like(counts))
    within = moment - (means.T * weights) @ means
    centred = means - mean
    between = (centred.T * weights) @ centred
    eye = torch.eye(moment.shape[0], dtype=moment.dtype, device=moment.device)
    return torch.linalg.solve(within + EPS * eye, between).diagonal().sum() / classes


class DynamicWeight(nn.Module):
    """Accumulates one epoch's features (``accumulate``) and turns them into T (``update``)."""

    def __init__(self, features: int, classes: int):
        super().__init__()
        self.classes = classes
        for domain in ("source", "target"):
            self.register_buffer(f"{domain}_counts", torch.zeros(classes, dtype=torch.float64))
            self.register_buffer(f"{domain}_sums", torch.zeros(classes, features, dtype=torch.float64))
            self.register_buffer(f"{domain}_moment", torch.zeros(features, features, dtype=torch.float64))
        # [A_min, A_max, J_min, J_max]; J's range is unset (NaN) until the first update
        self.register_buffer("ranges", torch.tensor([0.0, 0.0, float("nan"), float("nan")], dtype=torch.float64))
        self.register_buffer("weight", torch.tensor(0.5))
        self.register_buffer("degrees", torch.full((2,), float("nan"), dtype=torch.float64))  # (A, J) last seen
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def accumulate(self, features: Tensor, labels: Tensor, domain: str) -> None:
        f = features.detach().flatten(1).double()
        getattr(self, f"{domain}_counts").index_add_(0, labels, torch.ones_like(labels, dtype=torch.float64))
        getattr(self, f"{domain}_sums").index_add_(0, labels, f)
        getattr(self, f"{domain}_moment").add_(f.T @ f)

    @torch.no_grad()
    def update(self) -> None:
        """End of an epoch: A, J, their normalisation, T; then clear the accumulators."""
        k = self.classes
        a = linear_mmd(self.source_sums.sum(0), self.source_counts.sum(), self.target_sums.sum(0),
                       self.target_counts.sum())
        j_s = lda_criterion(self.source_counts, self.source_sums, self.source_moment, k)
        j_t = lda_criterion(self.target_counts, self.target_sums, self.target_moment, k)
        r = self.ranges
        lo_j = torch.where(r[2].isnan(), torch.minimum(j_s, j_t), torch.minimum(r[2], torch.minimum(j_s, j_t)))
        hi_j = torch.where(r[3].isnan(), torch.maximum(j_s, j_t), torch.maximum(r[3], torch.maximum(j_s, j_t)))
        r.copy_(torch.stack([torch.minimum(r[0], a), torch.maximum(r[1], a), lo_j, hi_j]))
        j = torch.minimum(j_s, j_t)
        a_norm = (a - r[0]).abs() / (r[1] - r[0] + EPS)
        j_norm = (j - r[2]) / (r[3] - r[2] + EPS)
        self.weight.copy_((a_norm / (a_norm + 1 - j_norm)).float())
        self.degrees.copy_(torch.stack([a, j]))
        for domain in ("source", "target"):
            for part in ("counts", "sums", "moment"):
                getattr(self, f"{domain}_{part}").zero_()
