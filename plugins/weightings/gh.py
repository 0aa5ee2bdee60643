"""Gradient Harmonization (Huang, Song, Zhang, IEEE TPAMI 2024), loss-weight form Eq. 42."""

import torch

from mtl_platform.contracts import Needs, Weighting
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param

from ._solvers import scale_of, symmetric, tiny


def harmonised_coefficients(gram, eps=0.0):
    """Coefficient rows of the harmonised gradients: row i is g̃_i = g_i − Σ_{j≠i} δ(g_iᵀg_j<0) g_iᵀg_j/‖g_j‖² g_j.

    Every projection is against the *original* g_j (simultaneous, spec §1.14). The loss weights
    are the column sums, τ = 1ᵀC. The denominator is ``‖g_j‖² + eps·trace(G)/m`` floored at the
    smallest normal number: with the default eps = 0 that is the exact definition (a zero g_j has
    g_iᵀg_j = 0 and is never projected against); eps > 0 damps the weights of tiny gradients,
    relative to the mean ‖g‖², so the weights stay invariant to a common rescaling.
    """
    gram = symmetric(gram)
    m = gram.shape[0]
    eye = torch.eye(m, dtype=torch.bool, device=gram.device)
    conflict = (gram < 0) & ~eye
    denom = torch.diagonal(gram).clamp_min(0) + eps * scale_of(gram) + tiny(gram)
    ratio = torch.where(conflict, gram / denom[None, :], torch.zeros_like(gram))  # [i, j]: g_iᵀg_j/‖g_j‖²
    return torch.eye(m, dtype=gram.dtype, device=gram.device) - ratio


class GH(Weighting):
    """Gradient Harmonization (Huang et al. TPAMI 2024): loss weights τ_k = 1 − Σ_{i≠k} δ(g_iᵀg_k<0)
    g_iᵀg_k/‖g_k‖².

    Huang, Song, Zhang, "Gradient Harmonization in Unsupervised Domain Adaptation", IEEE TPAMI
    2024 (arXiv 2408.00288). For two tasks this is Eq. 42 — the coefficients of Eq. 28/29
    (g̃ = g̃₁ + g̃₂, each g̃_i the projection of g_i onto the normal plane of the other when their
    inner product is negative, Eqs. 4 and 24) — and backpropagating Σ τ_k L_k with detached τ
    (Eqs. 41, 44, 45) gives exactly g̃ on the gradient space.

    m tasks (not in the paper; spec gradients.md §1.14): every g_i is projected simultaneously
    against every *original* g_j it conflicts with, and the results are summed. For m > 2 the sum
    is no longer guaranteed to be conflict-free with every g_i (PCGrad's sequential projections
    are the alternative; the two coincide at m = 2).

    Properties: τ_k ≥ 1 always (GH never down-weights; a small ‖g_k‖ against a large conflicting
    gradient makes τ_k large, without bound). The test is strict (g_iᵀg_k < 0): orthogonal
    gradients are left alone. With no conflict, or when all gradients are identical, τ = 1 (the
    plain sum). τ is invariant to scaling all gradients by one factor and permutation-equivariant.

    Open choices made explicit:
    - ``eps``, a relative guard on ‖g_k‖² (spec §1.13 item 2); the default 0 keeps the exact
      definition (only 0/0 is guarded).
    - ``tau_max`` (ours, not the paper's; off by default): an upper bound on each weight,
      τ_k ← min(τ_k, tau_max), applied task by task after Eq. 42, with tau_max ≥ 1 so a
      task without conflict (τ_k = 1) is never touched and the weights stay ≥ 1. The result
      is still a loss weighting, but wherever a τ_k is cut the update Σ τ_k g_k is no longer
      the harmonised gradient g̃ of Eq. 28/29 (the exact Eq. 42 identity is given up for that
      step): the small-gradient task gets less than its full projection.
    A loss weighting (DESIGN.md §3.2): the heads also receive ∇Σ τ_k L_k.
    """

    name = "gh"
    needs = Needs.GRAMIAN
    scales_heads = True
    promises = ("nonnegative",)
    params = (
        Param("eps", float, 0.0, "guard added to ‖g_k‖², times the mean ‖g‖² (0: exact definition)",
              bounds="[0, inf)"),
        Param("tau_max", float, None, "upper bound on each τ_k, ≥ 1 (null: unbounded, the paper's Eq. 42)",
              optional=True, bounds="[1, inf)"),
    )

    def weights(self, losses, gram=None, **computed):
        if gram is None:
            raise TypeError("gh needs the Gramian: call weights(losses, gram=G)")
        tau = harmonised_coefficients(gram, self.eps).sum(0)
        return tau if self.tau_max is None else tau.clamp(max=self.tau_max)


@hookimpl
def mtl_register(registry):
    registry.add_weighting(GH)
