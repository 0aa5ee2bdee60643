"""MDD: margin disparity discrepancy (Zhang et al., ICML 2019), as in tllib's implementation."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mtl_platform.params import Param

from .contract import UDAMethod, gradient_space_param, source_and_target_features
from .gradient_reversal import grl_coefficient, reverse_gradient


def adversarial_classifier(features: int, classes: int, hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Dropout(0.5), nn.Linear(hidden, classes))


class MDD(UDAMethod):
    """With F the classifier and F' the adversarial classifier (the alignment head) behind a
    gradient reversal, and ŷ = argmax F(f) (no gradient):

        L_align = trade_off · [γ · CE(F'(R(f_s)), ŷ_s) − log(1 − softmax(F'(R(f_t)))_{ŷ_t})]

    F' minimises it — agreeing with F on the source, disagreeing on the target, i.e. it
    maximises the disparity d = E_t[dis] − γ E_s[dis] (Zhang et al. 2019, Eq. 8–9) — while G,
    through R, minimises d. R's coefficient ramps to ``grl_high`` (tllib: 0.1). L_cls =
    CE(F(f_s), y_s). The GH paper never combined MDD with GH (spec §1.7); a weighting
    harmonises (L_align, L_cls) by default over the base network up to the adversarial
    classifier, G and F (DESIGN.md §3.3). L_align does not reach F (ŷ carries no gradient), so
    F adds only to ‖g_cls‖.
    """

    name = "mdd"
    params = (
        Param("trade_off", float, 1.0, "weight of the disparity loss, folded in before gradients", bounds="[0, inf)"),
        Param("margin", float, 4.0, "the margin factor γ", bounds="[0, inf)"),
        Param("hidden", int, 1024, "width of the adversarial classifier", bounds="[1, inf)"),
        Param("grl_high", float, 0.1, "final gradient-reversal coefficient", bounds="[0, inf)"),
        Param("gamma", float, 10.0, "steepness of the reversal schedule", bounds="[0, inf)"),
        Param("classifier", str, "linear", "the classifier F: linear, or mlp (the adversarial classifier's form)",
              choices=("linear", "mlp")),
        gradient_space_param("base_network", "the base network up to the adversarial classifier, as CDAN's; "
                             "the GH paper never combined MDD with GH"),
    )

    def classification_head(self, features, num_classes):
        if self.config["classifier"] == "mlp":
            return adversarial_classifier(features, num_classes, self.config["hidden"])
        return super().classification_head(features, num_classes)

    def alignment_head(self, features, num_classes):
        return adversarial_classifier(features, num_classes, self.config["hidden"])

    def losses(self, model, xs, ys, xt, progress, tasks):
        c = self.config
        fs, ft = source_and_target_features(model, xs, xt)
        ys_logits = model.heads["classification"](fs)
        out = {"classification": F.cross_entropy(ys_logits, ys)}
        if "alignment" in tasks:
            with torch.no_grad():
                pred_s, pred_t = ys_logits.argmax(1), model.heads["classification"](ft).argmax(1)
            coeff = grl_coefficient(progress, c["gamma"], c["grl_high"])
            adv = model.heads["alignment"](reverse_gradient(torch.cat([fs, ft]), coeff))
            adv_s, adv_t = adv[: len(fs)], adv[len(fs):]
            p_t = adv_t.softmax(1).gather(1, pred_t[:, None]).squeeze(1)
            disparity = c["margin"] * F.cross_entropy(adv_s, pred_s) - torch.log((1 - p_t).clamp_min(1e-6)).mean()
            out["alignment"] = c["trade_off"] * disparity
        return out
