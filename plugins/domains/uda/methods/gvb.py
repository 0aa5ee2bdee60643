"""GVB-GD: gradually vanishing bridges on the generator and the discriminator (Cui, Wang, Zhuo,
Li, Huang, Tian, "Gradually Vanishing Bridge for Adversarial Domain Adaptation", CVPR 2020),
in the form of the authors' code (github.com/cuishuhao/GVB, ``GVB-GD``; read, not copied).

GVB-G: the classifier's output is y = C(f) − B_G(f); the bridge B_G(f) models what is
domain-specific in f and its magnitude E|B_G(f)| is minimised, so the bridge vanishes as
training goes on. GVB-D: the discriminator's logit is D(p) − B_D(p), with its own bridge,
whose magnitude E|B_D(p)| is minimised too. The discriminator sees the softmax p of y (as
CDAN's code for its ``DANN`` setting), behind a gradient reversal, and each sample's
cross-entropy is weighted by e^{−H(p)}, normalised within each domain — the entropy passing
through a second reversal, as the code's ``grl_hook`` on it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl_platform.params import Param

from .contract import UDAMethod, gradient_space_param
from .discriminator import domain_labels
from .gradient_reversal import grl_coefficient, reverse_gradient


class BridgedClassifier(nn.Module):
    """C with the generator's bridge B_G (two linear maps of the features): ``forward`` gives
    y = C(f) − B_G(f), the classifier evaluated (C(f) alone when ``bridged`` is False, the
    code's GVBG = 0); ``parts`` gives (y, B_G(f))."""

    def __init__(self, features: int, classes: int, bridged: bool = True):
        super().__init__()
        self.fc = nn.Linear(features, classes)
        self.bridge = nn.Linear(features, classes)
        self.bridged = bridged

    def parts(self, f: Tensor) -> tuple[Tensor, Tensor]:
        bridge = self.bridge(f)
        y = self.fc(f)
        return (y - bridge if self.bridged else y), bridge

    def forward(self, f: Tensor) -> Tensor:
        return self.parts(f)[0]


class BridgedDiscriminator(nn.Module):
    """The GVB code's adversarial network on class probabilities: two hidden layers (ReLU,
    dropout 0.5), then the domain logit D and the discriminator's bridge B_D side by side."""

    def __init__(self, classes: int, hidden: int):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(classes, hidden), nn.ReLU(), nn.Dropout(0.5),
                                  nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(0.5))
        self.logit = nn.Linear(hidden, 1)
        self.bridge = nn.Linear(hidden, 1)

    def forward(self, p: Tensor) -> tuple[Tensor, Tensor]:
        h = self.body(p)
        return self.logit(h).squeeze(1), self.bridge(h).squeeze(1)


def entropy_weights(entropy: Tensor, n_source: int) -> Tensor:
    """w_i = e^{−H_i} / Σ_{j in i's domain} e^{−H_j} (the sums detached, as the code's
    ``.detach().item()``): each domain's weights add up to 1."""
    w = torch.exp(-entropy)
    ws, wt = w[:n_source], w[n_source:]
    return torch.cat([ws / ws.sum().detach(), wt / wt.sum().detach()])


def transfer_loss(logit: Tensor, bridge: Tensor | None, weights: Tensor, n_source: int) -> Tensor:
    """GVB's adversarial loss ½ Σ_i w_i BCE(σ(z_i), d_i), z = D(p) − B_D(p) (D(p) alone without
    the discriminator's bridge), d = 1 for the source and 0 for the target."""
    z = logit - bridge if bridge is not None else logit
    domain = domain_labels(n_source, len(z) - n_source, z.device)
    return (weights * F.binary_cross_entropy_with_logits(z, domain, reduction="none")).sum() / 2


def shannon_entropy(p: Tensor) -> Tensor:
    """H(p) = −Σ_k p_k log(p_k + 1e-5) per row, as the code's ``Entropy``."""
    return -(p * torch.log(p + 1e-5)).sum(1)


class GVB(UDAMethod):
    """GVB-GD (Cui et al., CVPR 2020, Eqs. 3–7 as the code computes them). With y = C(f) − B_G(f)
    on source and target, p = softmax(y), R the gradient reversal at the DANN schedule
    λ_p = 2/(1 + e^{−γp}) − 1 (the code's ``calc_coeff`` over 10,000 iterations):

        L_adv  = ½ Σ_i w_i BCE(σ(D(R(p_i)) − B_D(R(p_i))), d_i),   w_i = e^{−R(H(p_i))} per domain, normalised
        L_gvbg = mean |B_G(f)| over source and target,   L_gvbd = mean |B_D(R(p))|
        L_cls  = CE(y_s, y)

    The code's total is trade_off·L_adv + L_cls + λ·L_gvbg + μ·L_gvbd (λ = ``generator_bridge``,
    μ = ``discriminator_bridge``, both 1 in the authors' commands). The two GH tasks (spec
    gradients.md §1.7, brief): ``alignment`` = trade_off·L_adv + λ·L_gvbg + μ·L_gvbd, the
    adversarial and bridge terms with their weights folded in, and ``classification`` = L_cls.
    The GH code instead harmonises L_adv with L_cls and, separately, L_gvbg with L_gvbd (a
    second τ′ pair); that pairing does not fit the domain's two tasks and is not reproduced.

    Gradient space (``gradient_space``): the base network by default — G, C and the bridge B_G;
    D and B_D excluded — as the GH code's ``base_network`` for GVB (spec §1.7). L_adv reaches C
    and B_G through p; L_cls reaches no discriminator parameter.

    Source and target are forwarded through G separately, as in the code (BatchNorm layers see
    one domain at a time). Where the code subtracts B_D only when μ equals exactly 1, here it is
    subtracted whenever μ > 0; the cross-entropy is computed from the logit (stable) rather
    than from σ with an ε of 1e-8.
    """

    name = "gvb"
    params = (
        Param("trade_off", float, 1.0, "weight of the adversarial loss, folded in before gradients", bounds="[0, inf)"),
        Param("generator_bridge", float, 1.0, "λ: weight of the generator bridge's magnitude E|B_G(f)| (0: no "
              "GVB-G, the classifier is C alone)", bounds="[0, inf)"),
        Param("discriminator_bridge", float, 1.0, "μ: weight of the discriminator bridge's magnitude E|B_D| (0: no "
              "GVB-D, the logit is D alone)", bounds="[0, inf)"),
        Param("hidden", int, 1024, "discriminator width (the code's 1024)", bounds="[1, inf)"),
        Param("gamma", float, 10.0, "steepness γ of the reversal schedule", bounds="[0, inf)"),
        gradient_space_param("base_network", "the GH code's base_network for GVB-GD: G, C and the generator "
                             "bridge (spec §1.7)"),
    )

    def classification_head(self, features, num_classes):
        return BridgedClassifier(features, num_classes, bridged=self.config["generator_bridge"] > 0)

    def alignment_head(self, features, num_classes):
        return BridgedDiscriminator(num_classes, self.config["hidden"])

    def terms(self, model, xs, ys, xt, progress) -> dict[str, Tensor]:
        """Every loss term, unweighted: ``adversarial``, ``generator_bridge``,
        ``discriminator_bridge``, ``classification``."""
        c = self.config
        head = model.heads["classification"]
        ys_logits, bridge_s = head.parts(model.encoder(xs))
        yt_logits, bridge_t = head.parts(model.encoder(xt))
        n = len(xs)
        p = torch.cat([ys_logits, yt_logits]).softmax(1)
        coeff = grl_coefficient(progress, c["gamma"])
        logit, d_bridge = model.heads["alignment"](reverse_gradient(p, coeff))
        weights = entropy_weights(reverse_gradient(shannon_entropy(p), coeff), n)
        bridged_d = d_bridge if c["discriminator_bridge"] > 0 else None
        return {"adversarial": transfer_loss(logit, bridged_d, weights, n),
                "generator_bridge": torch.cat([bridge_s, bridge_t]).abs().mean(),
                "discriminator_bridge": d_bridge.abs().mean(),
                "classification": F.cross_entropy(ys_logits, ys)}

    def losses(self, model, xs, ys, xt, progress, tasks):
        c = self.config
        t = self.terms(model, xs, ys, xt, progress)
        out = {"classification": t["classification"]}
        if "alignment" in tasks:
            out["alignment"] = (c["trade_off"] * t["adversarial"] + c["generator_bridge"] * t["generator_bridge"]
                                + c["discriminator_bridge"] * t["discriminator_bridge"])
        return out
