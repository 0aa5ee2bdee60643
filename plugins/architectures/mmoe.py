"""Multi-gate Mixture-of-Experts (Ma, Zhao, Yi, Chen, Hong, Chi, KDD 2018, §4, Eq. 5–6)."""
from __future__ import annotations

from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param

from ._experts import ExtractionNetwork, SoftmaxGate


class MMoE(ExtractionNetwork):
    """Multi-gate Mixture-of-Experts: ``y_t = h_t(Σ_e g_t(x)_e f_e(x))`` (Eq. 5) with one
    gate per task ``g_t(x) = softmax(W_t x)`` (Eq. 6).

    The experts ``f_e`` are ``num_experts`` whole ``encoder_factory()`` copies. Gate input: the
    flattened stage-0 output of expert 0 (an input embedding whose shape ``stage_shapes[0]``
    gives; the raw input's shape is not part of the encoder contract); gradients flow through it.

    Parameter split: the experts → ``shared_parameters()`` (every task's output mixes all of
    them; ``parameter_blocks()`` groups them per encoder stage across experts); task t's gate
    ``W_t`` and head → ``task_parameters(t)`` (only task t's output reads them). No
    ``architecture_parameters()``: gates are trained with the task losses as in the paper.
    ``has_rep`` False: each head reads its own mixture. With one expert there is no gate and
    the model is hard parameter sharing.

    Params: ``num_experts`` (int, 4).
    """

    name = "mmoe"
    params = (Param("num_experts", int, 4, "number of expert encoder copies", bounds="[1, inf)"),)

    def __init__(self, tasks, encoder_factory, head_factory, num_experts=4, **params):
        super().__init__(tasks, encoder_factory, head_factory, num_experts=num_experts, **params)
        self._build(encoder_factory, head_factory, num_experts, 0, per_stage=False, gate_factory=SoftmaxGate)


@hookimpl
def mtl_register(registry):
    registry.add_architecture(MMoE)
