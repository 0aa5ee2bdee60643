"""Customized Gate Control (Tang, Liu, Zhao, Gong, RecSys 2020, the PLE paper, §4.2, Eq. 1–3)."""
from __future__ import annotations

from mtl_platform.hookspecs import hookimpl

from .ple import PLE


class CGC(PLE):
    """Customized Gate Control: shared experts plus experts of each task (PLE paper Eq. 1–3).

    Every expert is a whole ``encoder_factory()`` copy. Task t's output is
    ``y_t = head_t(g_t(x))`` with ``g_t(x) = w_t(x)ᵀ S_t(x)`` (Eq. 1), ``S_t(x)`` task t's
    experts followed by the shared experts (Eq. 2) and ``w_t(x) = softmax(W_t x)`` (Eq. 3).
    The gate reads the flattened stage-0 output of the first expert of its pool (task t's
    first expert, or the first shared expert when ``num_task_experts = 0``) instead of the raw
    input x, whose shape is not part of the encoder contract.

    Parameter split: shared experts → ``shared_parameters()`` (per encoder stage in
    ``parameter_blocks()``); task t's experts, its gate and its head → ``task_parameters(t)``
    (only task t's output reads them). No ``architecture_parameters()``; ``has_rep`` False.
    With ``num_shared_experts = 0`` and one task expert each task is an independent network
    (a gate over one expert has no parameters: its weight is 1).

    Params: ``num_shared_experts`` (int, 1), ``num_task_experts`` (int, 1).
    """

    name = "cgc"
    per_stage = False  # one level: every expert is a whole encoder copy


@hookimpl
def mtl_register(registry):
    registry.add_architecture(CGC)
