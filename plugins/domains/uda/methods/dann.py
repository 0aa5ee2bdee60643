"""DANN: domain-adversarial training (Ganin & Lempitsky, ICML 2015; Ganin et al., JMLR 2016)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mtl_platform.params import Param

from .contract import UDAMethod, gradient_space_param, source_and_target_features
from .discriminator import domain_discriminator, domain_labels
from .gradient_reversal import grl_coefficient, reverse_gradient


class DANN(UDAMethod):
    """L_align = trade_off · ½ [BCE(D(R(f_s)), 1) + BCE(D(R(f_t)), 0)] with R the gradient
    reversal layer at λ_p = 2/(1 + exp(−10 p)) − 1 (p: training progress), so D learns to
    tell the domains apart while G receives the reversed gradient; L_cls = CE(C(f_s), y_s).
    The pair (L_align, L_cls) is what a weighting harmonises. The GH paper never combined DANN
    with GH, so the default gradient space follows its CDAN setting: the base network up to
    the discriminator, G and C (spec gradients.md §1.7, DESIGN.md §3.3); L_align does not
    reach C, which adds only to ‖g_cls‖."""

    name = "dann"
    params = (
        Param("trade_off", float, 1.0, "weight of the alignment loss, folded in before gradients", bounds="[0, inf)"),
        Param("hidden", int, 1024, "discriminator width", bounds="[1, inf)"),
        Param("gamma", float, 10.0, "steepness γ of the reversal schedule", bounds="[0, inf)"),
        gradient_space_param("base_network", "as CDAN's; the GH paper never combined DANN with GH"),
    )

    def alignment_head(self, features, num_classes):
        return domain_discriminator(features, self.config["hidden"])

    def losses(self, model, xs, ys, xt, progress, tasks):
        c = self.config
        fs, ft = source_and_target_features(model, xs, xt)
        out = {"classification": F.cross_entropy(model.heads["classification"](fs), ys)}
        if "alignment" in tasks:
            f = reverse_gradient(torch.cat([fs, ft]), grl_coefficient(progress, c["gamma"]))
            logits = model.heads["alignment"](f).squeeze(1)
            domain = domain_labels(len(fs), len(ft), f.device)
            out["alignment"] = c["trade_off"] * F.binary_cross_entropy_with_logits(logits, domain)
        return out
