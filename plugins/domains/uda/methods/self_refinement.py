"""SSRT's self-refinement (Sun et al., CVPR 2022, §3.2, as the authors' code computes it): the
target samples are perturbed inside the generator and the model is asked to predict the same
on the clean and the perturbed copy, on the confident samples only."""
from __future__ import annotations

import torch
from torch import Tensor, nn


def perturb(h: Tensor, n_source: int, alpha: float) -> Tensor:
    """The perturbed copies of the target part h[n_source:]: each target sample moves a
    fraction ``alpha`` of the way towards another target sample (the batch's target half in
    reverse order), the offset carrying no gradient: h_t + alpha · sg(h_t' − h_t)."""
    t = h[n_source:]
    return t + alpha * (t.flip(0) - t).detach()


def perturbed_features(encoder: nn.Module, x: Tensor, n_source: int, layer: int, alpha: float) -> Tensor:
    """G(x) for the batch x = [source; target], followed by G on the target's perturbed copies.
    ``layer`` −1 perturbs the raw images, layer l ≥ 0 the output of the encoder's stage l (for
    the ViT generator: the input of transformer block l, as SSRT's ``sr_layers``)."""
    h = torch.cat([x, perturb(x, n_source, alpha)]) if layer == -1 else x
    for i, stage in enumerate(encoder.stages):
        h = stage(h)
        if i == layer:
            h = torch.cat([h, perturb(h, n_source, alpha)])
    return h


def refinement_loss(clean: Tensor, perturbed: Tensor, epsilon: float, clean_first: bool) -> Tensor:
    """The self-refinement loss on target logits: with p = softmax(clean), q = softmax(perturbed),
    Σ_i m_i KL(p_i ‖ q_i) / (Σ_i m_i + 1e-6), m_i = [max_k p_ik > epsilon] (``clean_first``),
    else the same with p and q exchanged (mask from q). Both distributions receive gradient."""
    a, b = (clean, perturbed) if clean_first else (perturbed, clean)
    p, log_p, log_q = a.softmax(1), a.log_softmax(1), b.log_softmax(1)
    mask = (p.detach().amax(1) > epsilon).to(p.dtype)
    return ((p * (log_p - log_q)).sum(1) * mask).sum() / (mask.sum() + 1e-6)


def distinct_classes(logits: Tensor) -> Tensor:
    """How many different classes the rows' argmax predicts (a 0-d float tensor, on the device)."""
    hit = torch.zeros(logits.shape[1], device=logits.device, dtype=logits.dtype)
    return hit.index_fill_(0, logits.argmax(1), 1.0).sum()
