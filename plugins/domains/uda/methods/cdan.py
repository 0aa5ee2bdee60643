"""CDAN(+E): conditional domain-adversarial networks (Long et al., NeurIPS 2018)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mtl_platform.params import Param

from .contract import UDAMethod, gradient_space_param, source_and_target_features
from .discriminator import domain_discriminator, domain_labels
from .gradient_reversal import grl_coefficient, reverse_gradient


class RandomizedMultilinear(nn.Module):
    """T(f, g) = (R_f f) ⊙ (R_g g) / √d with fixed Gaussian R_f, R_g (Long et al. 2018, Eq. 6),
    the d-dimensional unbiased estimate of the multilinear map f ⊗ g; buffers, not trained."""

    def __init__(self, features: int, classes: int, dim: int):
        super().__init__()
        self.register_buffer("rf", torch.randn(features, dim))
        self.register_buffer("rg", torch.randn(classes, dim))
        self.dim = dim

    def forward(self, f, g):
        return (f @ self.rf) * (g @ self.rg) / math.sqrt(self.dim)


class ConditionalDiscriminator(nn.Module):
    """D on the multilinear map of features and class probabilities (f ⊗ g flattened, or its
    randomized version when the product is larger than ``random_dim``)."""

    def __init__(self, features: int, classes: int, hidden: int, random_dim: int):
        super().__init__()
        self.random = RandomizedMultilinear(features, classes, random_dim) if features * classes > random_dim else None
        self.net = domain_discriminator(random_dim if self.random is not None else features * classes, hidden)

    def forward(self, f, g):
        z = self.random(f, g) if self.random is not None else torch.bmm(g.unsqueeze(2), f.unsqueeze(1)).flatten(1)
        return self.net(z).squeeze(1)


def entropy(p):
    return -(p * torch.log(p + 1e-5)).sum(1)


class CDAN(UDAMethod):
    """L_align = trade_off · Σ_i w_i BCE(D(R(f_i), g_i), d_i) / Σ_i w_i over the source and
    target samples, g = softmax(C(f)) detached (as tllib and the CDAN code), R the gradient
    reversal at the DANN schedule, and with ``entropy: true`` (CDAN+E, the GH paper's CDAN)
    w_i = 1 + exp(−H(g_i)) normalised within each domain, detached; else w_i = 1.
    L_cls = CE(C(f_s), y_s).

    Gradient space (``gradient_space``): by default the base network — G (backbone +
    bottleneck) and the classifier C, the discriminator excluded — as the GH code's
    ``base_network`` for CDAN+E (spec gradients.md §1.7, DESIGN.md §3.3). L_align does not
    reach C (g is detached), so C adds only to ‖g_cls‖: GH's τ_cls = 1 − g₁ᵀg₂/‖g₂‖² is smaller
    than over G alone, τ_align and the sign of g₁ᵀg₂ are the same."""

    name = "cdan"
    params = (
        Param("trade_off", float, 1.0, "weight of the alignment loss, folded in before gradients", bounds="[0, inf)"),
        Param("entropy", bool, True, "CDAN+E: entropy-conditioned sample weights"),
        Param("random_dim", int, 1024, "dimension of the randomized multilinear map (used when f⊗g is larger)",
              bounds="[1, inf)"),
        Param("hidden", int, 1024, "discriminator width", bounds="[1, inf)"),
        Param("gamma", float, 10.0, "steepness γ of the reversal schedule", bounds="[0, inf)"),
        gradient_space_param("base_network", "the GH code's base_network for CDAN+E (spec §1.7)"),
    )

    def alignment_head(self, features, num_classes):
        c = self.config
        return ConditionalDiscriminator(features, num_classes, c["hidden"], c["random_dim"])

    def losses(self, model, xs, ys, xt, progress, tasks):
        c = self.config
        fs, ft = source_and_target_features(model, xs, xt)
        logits_s = model.heads["classification"](fs)
        out = {"classification": F.cross_entropy(logits_s, ys)}
        if "alignment" in tasks:
            f = torch.cat([fs, ft])
            g = torch.cat([logits_s, model.heads["classification"](ft)]).softmax(1).detach()
            d = model.heads["alignment"](reverse_gradient(f, grl_coefficient(progress, c["gamma"])), g)
            domain = domain_labels(len(fs), len(ft), f.device)
            if c["entropy"]:
                w = 1.0 + torch.exp(-entropy(g))
                ns = len(fs)
                w = torch.cat([w[:ns] / w[:ns].sum(), w[ns:] / w[ns:].sum()])
                loss = (w * F.binary_cross_entropy_with_logits(d, domain, reduction="none")).sum() / w.sum()
            else:
                loss = F.binary_cross_entropy_with_logits(d, domain)
            out["alignment"] = c["trade_off"] * loss
        return out
