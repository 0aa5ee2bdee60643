"""DWL: dynamic weighted learning (Xiao & Zhang, CVPR 2021), in the GH paper's setting."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mtl_platform.contracts.step import StepOutput, detached, task_weights
from mtl_platform.errors import UserError
from mtl_platform.params import Param

from .classifiers import Classifiers, discrepancy, entropy
from .contract import UDAMethod, gradient_space_param
from .discriminator import domain_discriminator, domain_labels
from .dynamic_weight import DynamicWeight
from .joint_forward import domain_features, forward_param
from .partial_step import partial_step


class WeightedAdversary(nn.Module):
    """DWL's alignment head: the domain discriminator D (one logit, source = 1) and the
    dynamic weight's statistics (buffers, so they are checkpointed with the model)."""

    def __init__(self, features: int, classes: int, hidden: int):
        super().__init__()
        self.net = domain_discriminator(features, hidden)
        self.dynamic = DynamicWeight(features, classes)

    def forward(self, f):
        return self.net(f).squeeze(1)


def domain_bce(logits, n_source, inverted=False):
    """D's cross-entropy against the domain labels (source 1, target 0), or against the
    inverted labels — the loss G minimises to fool D."""
    domain = domain_labels(n_source, len(logits) - n_source, logits.device)
    return F.binary_cross_entropy_with_logits(logits, 1.0 - domain if inverted else domain)


class DWL(UDAMethod):
    """G, three classifiers C, C1, C2 (the classification head; C is evaluated) and a domain
    discriminator D. Each iteration, as in the DWL and GH code for digits:

    1. G, C: source cross-entropy, ``source_steps`` times;
    2. D: ``discriminator_weight`` · BCE(D(f), domain) on G's features (G fixed);
    3. C, C1, C2: Σ CE on the source − discrepancy(C1(f_t), C2(f_t));
    4. G only, ``generator_steps`` times, on the pair a weighting harmonises over G (the
       default ``gradient_space: generator``, the GH code's DWL, spec gradients.md §1.7; with
       ``base_network`` the g_i also span C, C1, C2, of which only G's part is applied):
       L_align = T · ``align_weight`` · BCE(D(f), 1 − domain) — G fools D, with the inverted
       labels of the non-saturating GAN loss, so the loss stays positive for the loss-scale
       weightings — and L_disc = (1 − T) · [d(C1,C2) + d(C,C1) + d(C,C2)] on the target, T the
       dynamic weight (``dynamic_weight.py``) folded into the losses before the gradients
       are taken;
    5. G, C: pseudo-label step, 2·[μ·CE(C(f_t), ŷ_t) + (1 − μ)·H(C(f_t))] with the confidence
       μ = (e^{−H} − 1/K)/(1 − 1/K) of the batch's mean entropy H (no gradient through μ);
    6. features of the batch into the epoch's statistics; T is renewed after every epoch.

    Where the published code departs from the paper, this follows the paper: D is trained to
    tell the domains apart and G to fool it (the code's D regresses D(f_s) onto D(f_t) and its
    G maximises that loss, −0.2·BCE), and H is the Shannon entropy and receives gradient (the
    code's is divided by K and detached). Task ``alignment`` is
    L_align and ``classification`` L_disc, DWL's discriminability. The paper's cross-domain
    sample re-weighting for class imbalance is not in that code and not here. ``forward:
    joint`` forwards both domains in steps 1 and 5 too (``joint_forward.py``). Needs
    ``train.accumulate: 1``.
    """

    name = "dwl"
    params = (
        Param("align_weight", float, 0.2, "weight of the adversarial loss in G's step (the code's 0.2)",
              bounds="[0, inf)"),
        Param("discriminator_weight", float, 0.1, "weight of D's loss in its step (the code's 0.1)", bounds="[0, inf)"),
        Param("source_steps", int, 8, "source-classification steps of G and C per iteration (the code's 8)",
              bounds="[0, inf)"),
        Param("generator_steps", int, 8, "weighted steps of G per iteration (the code's 8)", bounds="[1, inf)"),
        Param("pseudo_label_steps", int, 1, "pseudo-label steps of G and C per iteration", bounds="[0, inf)"),
        Param("hidden", int, 1024, "width of the classifiers and of D", bounds="[1, inf)"),
        forward_param(),
        gradient_space_param("generator", "the GH code's DWL: G, the only part step 4 moves"),
    )

    _iteration: int | None = None

    def classification_head(self, features, num_classes):
        return Classifiers(features, num_classes, self.config["hidden"], 3)

    def alignment_head(self, features, num_classes):
        return WeightedAdversary(features, num_classes, self.config["hidden"])

    def losses(self, model, xs, ys, xt, progress, tasks):
        """Step 4's pair (what the weighting sees)."""
        c, n = self.config, len(xs)
        f = model.encoder(torch.cat([xs, xt]))
        heads = model.heads["classification"].all(f[n:])
        disc = discrepancy(heads[1], heads[2]) + discrepancy(heads[0], heads[1]) + discrepancy(heads[0], heads[2])
        if "alignment" not in tasks:
            return {"classification": disc}
        adversary = model.heads["alignment"]
        t = adversary.dynamic.weight
        return {"alignment": t * c["align_weight"] * domain_bce(adversary(f), n, inverted=True),
                "classification": (1 - t) * disc}

    def train_step(self, batch, model, engine, optimizers, tasks):
        if engine.accumulate != 1:
            raise UserError("train.accumulate: DWL's steps need 1 (each step updates other parameters)")
        c = self.config
        xs, ys, xt, progress = batch
        n, both, joint = len(xs), torch.cat([xs, xt]), c["forward"] == "joint"
        heads, adversary = model.heads["classification"], model.heads["alignment"]
        generator, classifier = list(model.encoder.parameters()), list(heads.members[0].parameters())
        for _ in range(c["source_steps"]):  # 1
            fs = domain_features(model, xs, xt, "source", joint)
            partial_step(model, optimizers, F.cross_entropy(heads(fs), ys), generator + classifier)
        with torch.no_grad():
            f = model.encoder(both)
        partial_step(model, optimizers, c["discriminator_weight"] * domain_bce(adversary(f), n),  # 2
                     adversary.parameters())
        outs = heads.all(f)  # 3 (G fixed: f has no graph)
        loss = sum(F.cross_entropy(o[:n], ys) for o in outs) - discrepancy(outs[1][n:], outs[2][n:])
        partial_step(model, optimizers, loss, heads.parameters())
        for _ in range(c["generator_steps"]):  # 4
            losses = self.losses(model, xs, ys, xt, progress, tasks)
            answer = partial_step(model, optimizers, losses, generator, engine, self.gradient_space(model))
        k = self.classes(heads)
        for _ in range(c["pseudo_label_steps"]):  # 5
            logits = heads(domain_features(model, xs, xt, "target", joint))
            h = entropy(logits)
            mu = ((-h.detach()).exp() - 1.0 / k) / (1.0 - 1.0 / k)
            loss = 2 * (mu * F.cross_entropy(logits, logits.detach().argmax(1)) + (1 - mu) * h)
            partial_step(model, optimizers, loss, generator + classifier)
        with torch.no_grad():  # 6
            f = model.encoder(both)
            dynamic = adversary.dynamic
            dynamic.accumulate(f[:n], ys, "source")
            dynamic.accumulate(f[n:], heads(f[n:]).argmax(1), "target")
            if self._iteration is None:  # the one host read: where a resumed run's count stands
                self._iteration = int(dynamic.iteration)
            self._iteration += 1
            dynamic.iteration += 1
            if self._iteration % (self.epoch_iterations or 1) == 0:
                dynamic.update()
        return StepOutput(detached(losses), task_weights(answer, len(engine.tasks)))

    @staticmethod
    def classes(heads) -> int:
        return heads.members[0][-1].out_features
