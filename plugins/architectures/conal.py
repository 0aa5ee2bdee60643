"""CoNAL's supernet (Yue, PhD thesis 2023, Ch. 5, §5.2, Eq. 5.1; spec thesis.md §3.2)."""
from __future__ import annotations

import torch
from torch import nn

from mtl_platform.contracts import Architecture
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param
from mtl_platform.stages import BilevelSearch, DeriveStage, TrainStage, from_derived
from mtl_platform.stages.bilevel import search_section
from mtl_platform.stages.symmetric_start import SYMMETRIC_INIT, copy_weights


class CoNAL(Architecture):
    """CoNAL supernet: all-shared encoder f_S plus one purely-specific encoder h_t per task,
    task t entering its private path at branch point p with weight softmax(α_t)_p.

    With z_1 = x and z_p = f_S^{p−1}(z_{p−1}) the output of the first p−1 shared stages,
    o_t = Σ_{p=1..P} softmax(α_t)_p · h_t^{p→}(z_p), where h_t^{p→} runs task t's private
    stages p … P−1 (the identity for p = P), and ŷ_t = g_t(o_t) (thesis §5.2, plain softmax,
    no temperature). Branch point 1 is the single-task network, P the HPS network. α starts
    uniform (zeros, spec [ASSUME]). With ``search.symmetric_init`` (default) every h_t starts
    from f_S's weights (spec §3.2: all copies from the same weights) and heads of one shape
    from the same weights. f_S is shared; h_t and the head g_t belong to task t;
    α is the architecture parameters. ``branch_points()`` gives each task's argmax branch
    point (1-based), what CoNAL's derivation keeps. Each task evaluates P(P−1)/2 private
    stages per forward.

    A run has three stages (spec thesis §3.4–3.5): ``search`` — first-order bi-level search
    on the two halves of the training set, each iteration an α step on a D_val batch, then a
    θ step on a D_tr batch with the conflict rule (the ``conal_conflict`` weighting) on the
    shared stages; ``derive`` — p_t = argmax α_t of the last epoch, saved as a ``tree``
    architecture; ``retrain`` — the derived tree from fresh weights on the full training
    set with the configured weighting (default: the thesis's random loss weights u/Σu) and
    the run's optimizer and epochs. ``search.conflict_notice: false`` is the thesis's
    "w/o conflict-notice" ablation, ``search.bilevel: false`` its single-level CoNAL_sl.
    """

    name = "conal"
    has_rep = False
    default_weighting = {"name": "rlw", "distribution": "uniform", "normalise": "sum"}
    params = (search_section(Param("conflict_notice", bool, True, "zero the shared stages' gradient from the "
                                   "first conflicting stage on (Eq. 5.2-5.3)"), SYMMETRIC_INIT,
                             help="CoNAL's architecture search (thesis Algorithm 3)"),)

    @classmethod
    def stage_plan(cls, config, *, domain, registry):
        notice = config["architecture"]["search"]["conflict_notice"]
        rule = {"name": "conal_conflict" if notice else "ew"}
        return [BilevelSearch("search", weighting=lambda ctx: rule), DeriveStage("derive", source="search"),
                TrainStage("retrain", configure=from_derived("derive"))]

    def __init__(self, tasks, encoder_factory, head_factory, **params):
        super().__init__(tasks, encoder_factory, head_factory, **params)
        self.shared = encoder_factory()
        self.private = nn.ModuleDict({t: encoder_factory() for t in self.tasks})
        self.heads = nn.ModuleDict({t: head_factory(t) for t in self.tasks})
        self.points = len(self.shared.stages) + 1  # P
        self.alpha = nn.ParameterDict({t: nn.Parameter(torch.zeros(self.points)) for t in self.tasks})
        if (params.get("search") or {}).get("symmetric_init", True):
            copy_weights(self.shared, self.private.values())
            copy_weights(self.heads[self.tasks[0]], self.heads.values())

    def forward(self, inputs):
        prefixes = [inputs]  # z_1 … z_P
        for stage in self.shared.stages:
            prefixes.append(stage(prefixes[-1]))
        out = {}
        for t in self.tasks:
            weights = torch.softmax(self.alpha[t], dim=0)
            stages = self.private[t].stages
            mixed = 0
            for p, z in enumerate(prefixes):  # p = 0 … P−1 here is branch point p+1
                for stage in stages[p:]:
                    z = stage(z)
                mixed = mixed + weights[p] * z
            out[t] = self.heads[t](mixed)
        return out

    def shared_parameters(self):
        return list(self.shared.parameters())

    def task_parameters(self, task):
        return [*self.private[task].parameters(), *self.heads[task].parameters()]

    def architecture_parameters(self):
        return list(self.alpha.values())

    def parameter_blocks(self):
        return [list(s.parameters()) for s in self.shared.stages if any(True for _ in s.parameters())]

    def branch_points(self) -> dict[str, int]:
        """Each task's most probable branch point, 1-based (1: fully private … P: fully shared)."""
        points = torch.stack([self.alpha[t].detach() for t in self.tasks]).argmax(1).add(1).tolist()
        return dict(zip(self.tasks, points))

    def search_state(self) -> dict:
        probs = torch.softmax(torch.stack([self.alpha[t].detach() for t in self.tasks]), 1).tolist()
        return {"alpha": dict(zip(self.tasks, probs)), "branch_points": self.branch_points()}

    def decisions(self) -> dict[str, list[float]]:
        """Each task's branch-point distribution softmax(α_t), the argmax of which is derived."""
        return self.search_state()["alpha"]

    def derive(self) -> dict:
        """The tree of argmax branch points (spec thesis §3.4, "final architecture")."""
        state = self.search_state()
        return {"architecture": {"name": "tree", "branch_points": state["branch_points"]}, **state}


@hookimpl
def mtl_register(registry):
    registry.add_architecture(CoNAL)
