"""Sharpness-Aware Minimization (Foret, Kleiner, Mobahi, Neyshabur, ICLR 2021), Eq. 2 and
Algorithm 1; the adaptive variant ASAM (Kwon, Kim, Park, Choi, ICML 2021), Eq. 8."""
from __future__ import annotations

import torch

from mtl_platform.contracts import ClosureMethod
from mtl_platform.contracts.step import StepOutput, detached, task_weights
from mtl_platform.gradients.perturb import EPS, Snapshot, frozen_running_stats, joint_norm, trainable
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param


class SAM(ClosureMethod):
    """Sharpness-Aware Minimization: the gradient at θ + ε̂, ε̂ = ρ g/‖g‖, steps θ.

    Foret et al., "Sharpness-Aware Minimization for Efficiently Improving Generalization",
    ICLR 2021: Eq. 2 (ε̂(w) = ρ ∇L/‖∇L‖₂, p = 2) and the two-step algorithm (Algorithm 1):
    g = ∇L(θ); ε̂ = ρ g/‖g‖; step the base optimizer with ∇L(θ + ε̂). Here L is the multi-task
    objective of the configured weighting: g is the combined gradient the engine writes for
    ``engine.backward`` on the batch's task losses (any weighting), taken jointly over every
    trainable model parameter (one norm), and the gradient at θ + ε̂ is again the engine's
    combined gradient, on the same batch with the same random draws. θ is restored exactly
    before the base optimizer (SGD, Adam, AdamW) steps; BatchNorm statistics are updated by the
    first pass only. ``adaptive``: ASAM (Kwon et al., ICML 2021, Eq. 8 with T_w = |w| + η):
    ε̂ = ρ T² g/‖T g‖. Cost: two forward and two engine backward passes per step.
    """

    name = "sam"
    params = (
        Param("rho", float, 0.05, "neighbourhood radius ρ (Foret et al.'s default 0.05; ASAM uses larger, "
              "e.g. 0.5)", bounds="[0, inf)"),
        Param("adaptive", bool, False, "ASAM: scale the perturbation element-wise by T = |w| + eta"),
        Param("eta", float, 0.01, "η of ASAM's T = |w| + η", bounds="[0, inf)"),
    )

    def step(self, closure, engine, optimizers) -> StepOutput:
        model = engine.model
        losses = closure()
        answer = engine.backward(losses, params=closure.params)
        out = StepOutput(detached(losses), task_weights(answer, len(engine.tasks)))
        del losses
        params = [p for p in trainable(model.parameters()) if p.grad is not None]
        with torch.no_grad():
            grads = [p.grad for p in params]
            if self.adaptive:
                scales = [p.abs() + self.eta for p in params]
                grads = [s * g for s, g in zip(scales, grads)]  # T g
                norm = joint_norm(grads)
                deltas = [s * g * (self.rho / (norm + EPS)) for s, g in zip(scales, grads)]  # ρ T² g/‖T g‖
            else:
                norm = joint_norm(grads)
                deltas = [g * (self.rho / (norm + EPS)) for g in grads]
        for opt in optimizers:  # only the gradient at θ + ε̂ is applied
            opt.zero_grad(set_to_none=True)
        for p in trainable(model.parameters()):
            p.grad = None
        with frozen_running_stats(model), Snapshot(params).shifted(deltas):
            engine.backward(closure(), params=closure.params)
        engine.step(optimizers, closure=closure)
        return out


@hookimpl
def mtl_register(registry):
    registry.add_closure(SAM)
