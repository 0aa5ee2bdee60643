"""The perturbed-gradient alignment step of PGA and MPGA (Phan et al., NeurIPS 2024; spec
gradients.md §3.3, §3.4): one update with m objectives, a shared parameter block and one block
per task, by finite differences at perturbed parameters (no Hessian-vector products).

    for every task i: g_sh[i], g_sp[i] = ∇L_i at θ                      (m backward passes)
    for every task i:
        sp[i] = θ_sp[i] + ρ_gn g_sp[i]/(‖g_sp[i]‖+ε)
        sh    = θ_sh + ρ_gn g_sh[i]/(‖g_sh[i]‖+ε) − ρ_ga Σ_{j∈N(i)} g_sh[j]/(‖g_sh[j]‖‖g_sh[i]‖+ε)
        g̃_sh[i], g̃_sp[i] = ∇L_i there; restore θ                        (m more)
    ∇θ_sh ← Σ_i c_i g̃_sh[i];  ∇θ_sp[i] ← g̃_sp[i];  optimizer step

ε = 1e-12 in every denominator. ``joint``: the norm-penalty part normalised over the task's
shared and own block together, (g_sh[i], g_sp[i])/‖(g_sh[i], g_sp[i])‖ (spec §3.6 item 3); the
alignment part stays on the shared block. For quadratic losses the final shared gradient is
exactly Σ_i c_i (g_i + H_i Δ_i) (spec §3.3).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from mtl_platform.contracts.step import StepOutput, detached
from mtl_platform.gradients.perturb import EPS, Snapshot, direction, frozen_running_stats, gradient_of, trainable
from mtl_platform.gradients.spaces import scatter


def aligned_step(closure, engine, optimizers, *, radius: float, align: float, coefficients: Sequence[float],
                 neighbours: Sequence[Sequence[int]], joint: bool = False) -> StepOutput:
    """One update (see the module docstring) over ``engine.tasks``; ``coefficients[i]`` is c_i
    and ``neighbours[i]`` is N(i) (task indices). The gradients end in ``.grad`` (scaled by the
    AMP scaler's factor, if any) and the optimizers step through ``engine.step``."""
    model, tasks = engine.model, list(engine.tasks)
    m = len(tasks)
    shared = trainable(model.shared_parameters())
    own = [trainable(model.task_parameters(t)) for t in tasks]
    n_sh = sum(p.numel() for p in shared)
    amp = engine.scaler.scale(torch.ones((), device=shared[0].device)) if engine.scaler is not None else None

    losses = closure()
    terms = engine.terms(losses)  # each task's pass visits only its own graph
    out_losses = detached(losses)
    first = terms if amp is None else [t * amp for t in terms]
    g_sh, g_sp = [], []
    for i in range(m):  # the true gradients at θ (taken of the scaled loss, unscaled)
        g = gradient_of(first[i], shared + own[i], retain_graph=i < m - 1)
        if amp is not None:
            g = g / amp
        g_sh.append(g[:n_sh])
        g_sp.append(g[n_sh:])
    del losses, terms, first
    with torch.no_grad():
        norms = [torch.linalg.vector_norm(g) for g in g_sh]
        shifts = []
        for i in range(m):
            if joint:
                d = torch.cat([g_sh[i], g_sp[i]])
                d = radius * direction(d)
                d_sh, d_sp = d[:n_sh], d[n_sh:]
            else:
                d_sh, d_sp = radius * direction(g_sh[i]), radius * direction(g_sp[i])
            for j in neighbours[i]:
                d_sh = d_sh - align * g_sh[j] / (norms[j] * norms[i] + EPS)
            shifts.append((d_sh, d_sp))

    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    every = shared + [p for block in own for p in block]
    snapshot = Snapshot(every)
    final_sh = None
    final_sp: list[Tensor] = []
    with frozen_running_stats(model):
        for i, (d_sh, d_sp) in enumerate(shifts):
            deltas = _deltas(every, shared, own[i], d_sh, d_sp)
            with snapshot.shifted(deltas):
                loss = engine.terms(closure())[i]
                g = gradient_of(loss if amp is None else loss * amp, shared + own[i])
            final_sh = coefficients[i] * g[:n_sh] if final_sh is None else final_sh + coefficients[i] * g[:n_sh]
            final_sp.append(g[n_sh:])
    scatter(shared, final_sh, owned=True)
    for block, g in zip(own, final_sp):
        scatter(block, g, owned=True)
    engine.step(optimizers, closure=closure)
    weights = torch.tensor(list(coefficients), dtype=torch.float32, device=final_sh.device)
    return StepOutput(out_losses, weights)


def _deltas(every, shared, own, d_sh: Tensor, d_sp: Tensor) -> list[Tensor | None]:
    """Per-parameter shifts of ``every``: ``d_sh`` cut over the shared block, ``d_sp`` over the
    task's own block, None (unchanged) elsewhere."""
    shift = {}
    for block, flat in ((shared, d_sh), (own, d_sp)):
        offset = 0
        for p in block:
            shift[id(p)] = flat[offset:offset + p.numel()]
            offset += p.numel()
    return [shift.get(id(p)) for p in every]
