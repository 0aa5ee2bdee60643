"""SSRT: safe self-refinement for transformer-based domain adaptation (Sun, Lu, Zhang, Ling,
CVPR 2022), in the form of the authors' code (github.com/tsun/SSRT; read, not copied)."""
from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from torch import nn

from mtl_platform.contracts.step import StepOutput, detached, task_weights
from mtl_platform.errors import UserError
from mtl_platform.params import Param

from .contract import UDAMethod, gradient_space_param
from .discriminator import domain_labels
from .gradient_reversal import grl_coefficient, reverse_gradient
from .safe_training import SafeTraining
from .self_refinement import distinct_classes, perturbed_features, refinement_loss


def mlp_head(features: int, hidden: int, out: int) -> nn.Sequential:
    """SSRT's classifier and discriminator: fc-ReLU-dropout(0.5)-fc, the hidden layers drawn
    from N(0, 0.01²) with zero bias, as the code initialises them."""
    net = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Dropout(0.5), nn.Linear(hidden, out))
    for layer in (net[0], net[3]):
        nn.init.normal_(layer.weight, 0.0, 0.01)
        nn.init.zeros_(layer.bias)
    return net


class SSRTAdversary(nn.Module):
    """The alignment head: the domain discriminator (one logit, source = 1) and the safe-training
    state (buffers, so they are checkpointed with the model)."""

    def __init__(self, features: int, hidden: int, safe: SafeTraining):
        super().__init__()
        self.net = mlp_head(features, hidden, 1)
        self.safe = safe

    def forward(self, f):
        return self.net(f).squeeze(1)


class SSRT(UDAMethod):
    """SSRT (Sun et al. 2022, Eqs. 1–4, with the code's constants). G is the ViT-B/16 generator
    (``domain.backbone: vit_b_16``; any staged generator works, its stages indexing
    ``sr_layers``), C and D are fc-ReLU-dropout-fc heads. On the batch [source; target]:

        L_dom = 2 · BCE(D(R(f)), d)     (R: gradient reversal ramping to ``grl_high`` = 0.1; d = 1 source, 0 target)
        L_sr  = Σ_i m_i KL(p_i ‖ p̃_i) / Σ_i m_i   (p̃: the target copy perturbed at a layer drawn from
                ``sr_layers`` by ``sr_alpha``·r towards another target sample; m_i: max p_i > ``sr_epsilon``;
                with probability 1 − ``sr_direction`` the two distributions exchange roles)
        L_cls = CE(C(f_s), y_s)

    Tasks (spec gradients.md §1.7, folded in before any gradient): ``alignment`` =
    domain_weight·L_dom + sr_weight·r·L_sr, ``classification`` = classification_weight·L_cls. The
    GH code lists SSRT's classification first; GH++ up-weights the domain's first task
    (alignment) unless ``weighting.priority: classification`` (the GH code's order) is set.

    r is the safe-training strength (``safe_training.py``): 1 without safe training; with it a
    sine ramp, restarted — and the model set back to the interval's snapshot — when the diversity
    of the target predictions collapses. The layer and the direction are drawn per iteration
    from (seed, iteration), so a re-evaluation of the same batch (closure methods) draws the same.

    Gradient space: the base network by default, G (ViT + bottleneck) and C; D excluded (spec
    §1.7, the GH code's ``base_network`` for SSRT). ``sr_weight: 0`` is the code's ViT + GRL
    baseline (no perturbation, no safe training). The code's perturbation at iteration i uses r
    of iteration i − 1; here both uses take r(i).
    """

    name = "ssrt"
    params = (
        Param("classification_weight", float, 1.0, "weight of the source cross-entropy", bounds="[0, inf)"),
        Param("domain_weight", float, 1.0, "weight of the adversarial domain loss", bounds="[0, inf)"),
        Param("sr_weight", float, 0.2, "weight of the self-refinement loss (0: the ViT + GRL baseline)",
              bounds="[0, inf)"),
        Param("sr_alpha", float, 0.3, "perturbation magnitude (the code's Office-Home/VisDA 0.3; Office-31 0.2)",
              bounds="[0, 1]"),
        Param("sr_layers", list, [0, 4, 8], "where to perturb: −1 the raw images, l ≥ 0 the input of block l "
              "(the output of the generator's stage l)", item=int, bounds="[-1, inf)"),
        Param("sr_epsilon", float, 0.4, "confidence threshold of the self-refinement mask", bounds="[0, 1]"),
        Param("sr_direction", float, 0.5, "probability of KL(clean ‖ perturbed) rather than KL(perturbed ‖ clean)",
              bounds="[0, 1]"),
        Param("hidden", int, 1024, "width of the classifier and the discriminator (the code: the bottleneck's)",
              bounds="[1, inf)"),
        Param("grl_high", float, 0.1, "final gradient-reversal coefficient (warm start from 0)", bounds="[0, inf)"),
        Param("gamma", float, 10.0, "steepness of the reversal schedule over domain.schedule_iterations "
              "(10 over 10,000 iterations = the code's α = 1 over 1,000)", bounds="[0, inf)"),
        Param("safe_training", bool, True, "adapt r and restart on a collapse of the prediction diversity"),
        Param("safe_interval", int, 1000, "T: iterations between snapshots and collapse checks", bounds="[1, inf)"),
        Param("safe_scales", int, 4, "L: the check compares chunk means at 2^0 … 2^L chunks", bounds="[0, 16]"),
        Param("safe_append_last", bool, True, "compare with the previous interval's last chunk too"),
        Param("restore_weights", bool, True, "on a collapse set the model back to the snapshot (false: only the "
              "ramp restarts, which is what the published code's snapshot by reference amounts to)"),
        gradient_space_param("base_network", "the GH code's base_network for SSRT: the ViT, bottleneck and "
                             "classifier (spec §1.7)"),
    )

    def classification_head(self, features, num_classes):
        return mlp_head(features, self.config["hidden"], num_classes)

    def alignment_head(self, features, num_classes):
        c = self.config
        safe = SafeTraining(c["safe_interval"], c["safe_scales"], c["safe_append_last"], c["restore_weights"])
        return SSRTAdversary(features, c["hidden"], safe)

    @property
    def refines(self) -> bool:
        return self.config["sr_weight"] > 0

    def draws(self, iteration: int) -> tuple[int, bool]:
        """The iteration's perturbation layer and KL direction, from (seed, iteration)."""
        rng = random.Random(self.seed * 1_000_003 + iteration)
        return rng.choice(self.config["sr_layers"]), rng.random() < self.config["sr_direction"]

    def strength(self, safe: SafeTraining, iteration: int) -> float:
        return safe.strength(iteration) if self.config["safe_training"] else 1.0

    def check_layers(self, encoder) -> None:
        last = len(encoder.stages) - 2
        for layer in self.config["sr_layers"]:
            if layer > last:
                raise UserError(f"domain.method.sr_layers: {layer} is past the generator's last block; allowed "
                                f"-1 (the images) … {last} (this generator has {last + 1} perturbable stage outputs)")

    def losses(self, model, xs, ys, xt, progress, tasks):
        c, n = self.config, len(xs)
        if "alignment" not in tasks:
            return {"classification": c["classification_weight"] * F.cross_entropy(
                model.heads["classification"](model.encoder(xs)), ys)}
        safe = model.heads["alignment"].safe
        x = torch.cat([xs, xt])
        m = len(x)
        r = 1.0
        if self.refines:
            self.check_layers(model.encoder)
            iteration = safe.host()["iteration"]
            r = self.strength(safe, iteration)
            layer, clean_first = self.draws(iteration)
            f = perturbed_features(model.encoder, x, n, layer, c["sr_alpha"] * r)
        else:
            f = model.encoder(x)
        logits = model.heads["classification"](f)
        coeff = grl_coefficient(progress, c["gamma"], c["grl_high"])
        d = model.heads["alignment"](reverse_gradient(f[:m], coeff))
        domain = 2 * F.binary_cross_entropy_with_logits(d, domain_labels(n, m - n, d.device))
        alignment = c["domain_weight"] * domain
        if self.refines:
            clean = logits[n:m]
            alignment = alignment + c["sr_weight"] * r * refinement_loss(clean, logits[m:], c["sr_epsilon"],
                                                                          clean_first)
            self._diversity = distinct_classes(clean.detach())
        return {"alignment": alignment, "classification": c["classification_weight"] * F.cross_entropy(logits[:n], ys)}

    def train_step(self, batch, model, engine, optimizers, tasks):
        """The default protocol (losses → engine over the gradient space → step), inside safe
        training's begin (restore, snapshot) and end (record the diversity, check)."""
        safe = model.heads["alignment"].safe
        guarded = self.refines and self.config["safe_training"]
        if guarded:
            safe.begin(model)
        self._diversity = None
        xs, ys, xt, progress = batch
        losses = self.losses(model, xs, ys, xt, progress, tasks)
        answer = engine.backward(losses, params=self.gradient_space(model))
        engine.step(optimizers, closure=lambda: self.losses(model, xs, ys, xt, progress, tasks))
        safe.end(self._diversity if guarded else None)
        return StepOutput(detached(losses), task_weights(answer, len(engine.tasks)))
