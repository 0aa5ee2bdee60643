"""DSMTL-IL, deep safe multi-task learning by individual learning (Yue, PhD thesis 2023, Ch. 6,
Eq. 6.3 and 6.5, Theorem 6.5.1; spec thesis.md §5.3, stage order as §9.5 reconstructs it)."""
from __future__ import annotations

from mtl_platform.baselines import stl_parts
from mtl_platform.hookspecs import hookimpl
from mtl_platform.stages import STLStage, TrainStage

from .dsmtl_jl import DSMTLJL


def load_stl_models(model, ctx) -> None:
    """Put each task's STL encoder and head (stage ``stl``) into its private encoder and head."""
    for task, entry in ctx.previous["stl"]["models"].items():
        encoder, head = stl_parts(ctx.config, task, ctx.registry, entry["weights"])
        model.private[task].load_state_dict(encoder)
        model.heads[task].load_state_dict(head)


class DSMTLIL(DSMTLJL):
    """DSMTL-IL: DSMTL-JL's network, trained in two stages.

    Stage ``stl`` (α_t ≡ 0): each task's private encoder f_t and decoder h_t trained alone,
    i.e. exactly its STL model — taken from the STL baseline cache (the same models Δp is
    measured against), trained and cached if absent. Stage ``gated``: f_t and h_t frozen
    (no gradient, kept in eval mode so normalisation statistics stay the STL ones), the
    public encoder f_S and the gates α_t = sigmoid(a_t) (a_t = 0 at start) trained on
    (1/m) Σ_t L_t(h_t(α_t f_S(x) + (1 − α_t) f_t(x))) with the configured weighting (EW in
    the thesis). α_t = 0 recovers STL, so the optimum is individually safe: L_t* ≤ L_t^STL
    for every task (Theorem 6.5.1). ``gate_position`` as in DSMTL-JL.
    """

    name = "dsmtl_il"

    def __init__(self, tasks, encoder_factory, head_factory, gate_position=0, **params):
        super().__init__(tasks, encoder_factory, head_factory, gate_position=gate_position, **params)
        self.private.requires_grad_(False)
        self.heads.requires_grad_(False)

    @classmethod
    def stage_plan(cls, config, *, domain, registry):
        return [STLStage("stl"), TrainStage("gated", init=load_stl_models)]

    def train(self, mode: bool = True):
        super().train(mode)
        self.private.eval()  # frozen parts stay in eval mode (DESIGN §3.4)
        self.heads.eval()
        return self

    def task_parameters(self, task):
        return [self.gates[task]]

    def frozen_parameters(self):
        """The STL parts: every private encoder and decoder."""
        return [*self.private.parameters(), *self.heads.parameters()]


@hookimpl
def mtl_register(registry):
    registry.add_architecture(DSMTLIL)
