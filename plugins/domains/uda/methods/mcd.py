"""MCD: maximum classifier discrepancy (Saito et al., CVPR 2018), steps A, B, C."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mtl_platform.contracts.step import StepOutput, detached, task_weights
from mtl_platform.errors import UserError
from mtl_platform.params import Param

from .classifiers import Classifiers, discrepancy, entropy
from .contract import UDAMethod, applies_to_heads, gradient_space_param
from .joint_forward import domain_features, forward_param
from .partial_step import check_plain_sgd, partial_step


class MCD(UDAMethod):
    """Each iteration (Saito et al. 2018, §3.2; tllib's schedule):

    A. G, F1, F2 on the source cross-entropies;
    B. F1, F2 only (G fixed): L_c = CE(F1(f_s)) + CE(F2(f_s)) + 0.01·[H(F1(f_t)) + H(F2(f_t))]
       and L_t = trade_off · (1 − discrepancy(F1(f_t), F2(f_t))) — the code's −trade_off·d
       shifted by a constant: the same gradients, but a positive loss, so the loss-scale
       weightings (DWA, UW, DB-MTL, …) are defined. This pair is the two tasks a weighting
       harmonises: by default its weights come from the generator's gradients of L_t and L_c
       (``gradient_space: generator``) and rescale the classifiers' update (GH's code, spec
       gradients.md §1.7). A gradient method (PCGrad, MGDA, …) writes its combined gradient
       on the gradient space only, which step B does not move, so with ``generator`` it is
       refused; with ``base_network`` (G, F1, F2) the classifiers' part of it is applied;
    C. G only, ``num_k`` times: minimise the discrepancy on the target.

    ``forward: separate`` (MCD's code) forwards only the source in step A and only the target
    in step C; ``joint`` (tllib's MCD) forwards both domains in every step, so BatchNorm layers
    always see mixed batches, and adds step B's target-entropy term to step A.

    Task ``alignment`` is L_t and ``classification`` L_c (GH's code orders them the other way:
    set GH++'s ``priority`` to favour classification as it does). The classification head holds
    F1 and F2; F1 classifies at evaluation. Needs ``train.accumulate: 1``.
    """

    name = "mcd"
    params = (
        Param("trade_off", float, 1.0, "weight of the discrepancy in step B", bounds="[0, inf)"),
        Param("num_k", int, 4, "generator steps (step C) per iteration", bounds="[1, inf)"),
        Param("hidden", int, 1024, "hidden width of each classifier", bounds="[1, inf)"),
        Param("depth", int, 1, "hidden layers of each classifier", bounds="[1, inf)"),
        Param("generator_momentum", bool, True, "G steps with the optimizer's momentum (false: plain SGD, "
              "as tllib's MCD; needs sgd)"),
        Param("entropy_weight", float, 0.01, "weight of the target entropy in L_c", bounds="[0, inf)"),
        forward_param(", and step A adds the target entropy"),
        gradient_space_param("generator", "the GH code takes τ from G's gradients and applies it in step B"),
    )

    def classification_head(self, features, num_classes):
        return Classifiers(features, num_classes, self.config["hidden"], 2, self.config["depth"])

    def check_weighting(self, weighting):
        if self.config["gradient_space"] == "generator" and not applies_to_heads(weighting):
            raise UserError(f"domain.method.gradient_space: MCD applies the weighting in step B, which moves only "
                            f"the classifiers, and {weighting.name!r} is a gradient method (its combined gradient "
                            f"goes to the generator alone); use a loss weighting such as ew, gh or gh_plus_plus, "
                            f"or gradient_space: base_network")

    def check_optimizers(self, optimizers):
        if not self.config["generator_momentum"]:
            check_plain_sgd(optimizers)

    def losses(self, model, xs, ys, xt, progress, tasks):
        """Step B's pair (what the weighting sees)."""
        c = self.config
        f = model.encoder(torch.cat([xs, xt]))
        y1, y2 = model.heads["classification"].all(f)
        n = len(xs)
        lc = F.cross_entropy(y1[:n], ys) + F.cross_entropy(y2[:n], ys) + c["entropy_weight"] * (
            entropy(y1[n:]) + entropy(y2[n:]))
        out = {"classification": lc}
        if "alignment" in tasks:
            out["alignment"] = c["trade_off"] * (1.0 - discrepancy(y1[n:], y2[n:]))
        return out

    def train_step(self, batch, model, engine, optimizers, tasks):
        if engine.accumulate != 1:
            raise UserError("train.accumulate: MCD's three steps need 1 (each step updates other parameters)")
        xs, ys, xt, progress = batch
        heads = model.heads["classification"]
        generator = list(model.encoder.parameters())
        plain = () if self.config["generator_momentum"] else generator
        joint = self.config["forward"] == "joint"
        # A: everything on the source (joint: plus the target entropy)
        if joint:
            step_a = self.losses(model, xs, ys, xt, progress, ("classification",))["classification"]
        else:
            y1, y2 = heads.all(model.encoder(xs))
            step_a = F.cross_entropy(y1, ys) + F.cross_entropy(y2, ys)
        partial_step(model, optimizers, step_a, model.parameters(), plain=plain)
        # B: the classifiers, on the weighted pair (weights from G's gradients)
        losses = self.losses(model, xs, ys, xt, progress, tasks)
        answer = partial_step(model, optimizers, losses, heads.parameters(), engine, self.gradient_space(model))
        # C: the generator, num_k times
        for _ in range(self.config["num_k"]):
            t1, t2 = heads.all(domain_features(model, xs, xt, "target", joint))
            partial_step(model, optimizers, discrepancy(t1, t2), generator, plain=plain)
        return StepOutput(detached(losses), task_weights(answer, len(engine.tasks)))
