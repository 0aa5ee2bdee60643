"""DSMTL-JL, deep safe multi-task learning by joint learning (Yue, PhD thesis 2023, Ch. 6,
Eq. 6.1 and 6.4; gate positions §6.7.4; spec thesis.md §5.2, §5.4, §5.5)."""
from __future__ import annotations

import torch
from torch import nn

from mtl_platform.contracts import Architecture
from mtl_platform.errors import UserError
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param


class DSMTLJL(Architecture):
    """DSMTL-JL: each task mixes a public and its private encoder, α_t·f_S + (1−α_t)·f_t.

    Per task t: the public encoder f_S (shared), a private encoder f_t of the same structure,
    a gate α_t = sigmoid(a_t) (a_t = 0 at start, so α_t = 0.5, spec [ASSUME]) and a decoder
    h_t: ŷ_t = h_t(α_t f_S(x) + (1 − α_t) f_t(x)) (Eq. 6.1), all trained jointly (Eq. 6.4).
    α_t = 0 is the single-task network, α_t = 1 the HPS network, hence Theorem 6.5.3: the
    optimal average training loss is at most min(STL, HPS).

    ``gate_position`` p (§6.7.4) mixes after encoder stage p instead of after the last one,
    and the mix continues through task t's private stages p+1…: 0 (default) means after the
    last stage, Eq. 6.1, the thesis's best position. f_S is shared; f_t, a_t and h_t belong
    to task t. No single representation is read by every head.
    """

    name = "dsmtl_jl"
    has_rep = False
    params = (Param("gate_position", int, 0, "mix after this encoder stage (1-based; 0: after the last)",
                    bounds="[0, inf)"),)

    def __init__(self, tasks, encoder_factory, head_factory, gate_position=0, **params):
        super().__init__(tasks, encoder_factory, head_factory, gate_position=gate_position, **params)
        public = encoder_factory()
        stages = len(public.stages)
        self.cut = gate_position or stages
        if not 1 <= self.cut <= stages:
            raise UserError(f"architecture.gate_position: got {gate_position}, allowed 0 (after the last stage) "
                            f"or 1..{stages}")
        self.public = nn.ModuleList(list(public.stages)[:self.cut])  # stages after the gate are never used
        self.private = nn.ModuleDict({t: encoder_factory() for t in self.tasks})
        self.heads = nn.ModuleDict({t: head_factory(t) for t in self.tasks})
        self.gates = nn.ParameterDict({t: nn.Parameter(torch.zeros(())) for t in self.tasks})

    def alpha(self, task: str) -> torch.Tensor:
        """α_t = sigmoid(a_t) ∈ (0, 1): the weight of the public encoder for task t."""
        return torch.sigmoid(self.gates[task])

    def forward(self, inputs):
        public = inputs
        for stage in self.public:
            public = stage(public)
        out = {}
        for t in self.tasks:
            private = inputs
            for stage in self.private[t].stages[:self.cut]:
                private = stage(private)
            alpha = self.alpha(t)
            mixed = alpha * public + (1 - alpha) * private
            for stage in self.private[t].stages[self.cut:]:
                mixed = stage(mixed)
            out[t] = self.heads[t](mixed)
        return out

    def shared_parameters(self):
        return list(self.public.parameters())

    def task_parameters(self, task):
        return [*self.private[task].parameters(), *self.heads[task].parameters(), self.gates[task]]

    def parameter_blocks(self):
        return [list(s.parameters()) for s in self.public if any(True for _ in s.parameters())]

    def search_state(self) -> dict:
        return {"gates": self.gate_values()}

    def gate_values(self) -> dict[str, float]:
        """The learned α_t, for the report (one host read)."""
        values = torch.sigmoid(torch.stack([self.gates[t].detach() for t in self.tasks])).tolist()
        return dict(zip(self.tasks, values))


@hookimpl
def mtl_register(registry):
    registry.add_architecture(DSMTLJL)
