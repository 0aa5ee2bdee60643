"""Hard parameter sharing (Caruana 1993): one shared encoder, one head per task."""
from __future__ import annotations

from torch import nn

from mtl_platform.contracts import Architecture
from mtl_platform.hookspecs import hookimpl


class HPS(Architecture):
    """Hard parameter sharing: a shared encoder whose output ``rep`` every task head reads."""

    name = "hps"
    has_rep = True

    def __init__(self, tasks, encoder_factory, head_factory, **params):
        super().__init__(tasks, encoder_factory, head_factory, **params)
        self.encoder = encoder_factory()
        self.heads = nn.ModuleDict({t: head_factory(t) for t in self.tasks})

    def forward(self, inputs):
        if isinstance(inputs, dict):  # multi-input domains: each task its own batch
            self.rep = None
            return {t: self.heads[t](self.encoder(inputs[t])) for t in self.tasks}
        self.rep = self.encoder(inputs)
        return {t: self.heads[t](self.rep) for t in self.tasks}

    def shared_parameters(self):
        return list(self.encoder.parameters())

    def task_parameters(self, task):
        return list(self.heads[task].parameters())

    @classmethod
    def split_task_state(cls, state, task):
        """The shared encoder (every task reads it) and ``task``'s head; with one task, the
        single-task model's two parts."""
        encoder = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
        head = {k[len(f"heads.{task}."):]: v for k, v in state.items() if k.startswith(f"heads.{task}.")}
        return encoder, head

    def parameter_blocks(self):
        stages = getattr(self.encoder, "stages", None)
        if stages is None:
            return [self.shared_parameters()]
        return [list(s.parameters()) for s in stages if any(True for _ in s.parameters())]


@hookimpl
def mtl_register(registry):
    registry.add_architecture(HPS)
    # The platform's defaults are data its plugins declare (the core names no component):
    # a config that names no architecture is HPS, the usual multi-task baseline, and the
    # single-task (STL) models are HPS with one task (the domain's encoder and that task's head).
    registry.set_default("architecture", "hps")
    registry.set_default("baselines.stl_architecture", "hps")
