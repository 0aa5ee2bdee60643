"""MCD: maximum classifier discrepancy (Saito et al., CVPR 2018), steps A, B, C."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mtl_platform.errors import UserError
from mtl_platform.params import Param

from .contract import UDAMethod


class TwoClassifiers(nn.Module):
    """F1 and F2 on the generator's features; ``forward`` gives F1's logits (evaluation) and
    ``both`` the two."""

    def __init__(self, features: int, classes: int, hidden: int):
        super().__init__()

        def make():
            return nn.Sequential(nn.Dropout(0.5), nn.Linear(features, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                                 nn.Linear(hidden, classes))

        self.f1, self.f2 = make(), make()

    def forward(self, f):
        return self.f1(f)

    def both(self, f):
        return self.f1(f), self.f2(f)


def discrepancy(a, b):
    """Mean |softmax(a) − softmax(b)| (Saito et al. 2018, Eq. 1)."""
    return (a.softmax(1) - b.softmax(1)).abs().mean()


def entropy(logits):
    p = logits.softmax(1)
    return -(p * torch.log(p + 1e-5)).sum(1).mean()


class MCD(UDAMethod):
    """Each iteration (Saito et al. 2018, §3.2; tllib's schedule):

    A. G, F1, F2 on the source cross-entropies;
    B. F1, F2 only (G fixed): L_c = CE(F1(f_s)) + CE(F2(f_s)) + 0.01·[H(F1(f_t)) + H(F2(f_t))]
       and L_t = −trade_off · discrepancy(F1(f_t), F2(f_t)) — this pair is the two tasks a
       weighting harmonises: its weights come from the generator's gradients of L_t and L_c,
       and rescale the classifiers' update (GH's code, spec gradients.md §1.7);
    C. G only, ``num_k`` times: minimise the discrepancy on the target.

    Task ``alignment`` is L_t and ``classification`` L_c (GH's code orders them the other way:
    set GH++'s ``priority`` to favour classification as it does). The classification head holds
    F1 and F2; F1 classifies at evaluation. Needs ``train.accumulate: 1``.
    """

    name = "mcd"
    params = (
        Param("trade_off", float, 1.0, "weight of the discrepancy in step B", minimum=0.0),
        Param("num_k", int, 4, "generator steps (step C) per iteration", minimum=1),
        Param("hidden", int, 1024, "hidden width of each classifier", minimum=1),
        Param("entropy_weight", float, 0.01, "weight of the target entropy in L_c", minimum=0.0),
    )

    def classification_head(self, features, num_classes):
        return TwoClassifiers(features, num_classes, self.config["hidden"])

    def losses(self, model, xs, ys, xt, progress, tasks):
        """Step B's pair (what the weighting sees)."""
        c = self.config
        f = model.encoder(torch.cat([xs, xt]))
        y1, y2 = model.heads["classification"].both(f)
        n = len(xs)
        lc = F.cross_entropy(y1[:n], ys) + F.cross_entropy(y2[:n], ys) + c["entropy_weight"] * (
            entropy(y1[n:]) + entropy(y2[n:]))
        out = {"classification": lc}
        if "alignment" in tasks:
            out["alignment"] = -c["trade_off"] * discrepancy(y1[n:], y2[n:])
        return out

    def train_step(self, batch, model, engine, optimizers, tasks):
        if engine.accumulate != 1:
            raise UserError("train.accumulate: MCD's three steps need 1 (each step updates other parameters)")
        xs, ys, xt, progress = batch
        heads = model.heads["classification"]
        generator = list(model.encoder.parameters())

        def step(loss_or_losses, keep, weighted=False):
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            if weighted:
                engine.backward(loss_or_losses, params=generator)
            else:
                loss_or_losses.backward()
            keep_ids = {id(p) for p in keep}
            for p in model.parameters():
                if id(p) not in keep_ids:
                    p.grad = None
            for opt in optimizers:
                opt.step()
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)

        # A: everything on the source
        y1, y2 = heads.both(model.encoder(xs))
        step(F.cross_entropy(y1, ys) + F.cross_entropy(y2, ys), list(model.parameters()))
        # B: the classifiers, on the weighted pair (weights from G's gradients)
        losses = self.losses(model, xs, ys, xt, progress, tasks)
        step(losses, list(heads.parameters()), weighted=True)
        # C: the generator, num_k times
        for _ in range(self.config["num_k"]):
            t1, t2 = heads.both(model.encoder(xt))
            step(discrepancy(t1, t2), generator)
        return {k: v.detach() for k, v in losses.items()}
