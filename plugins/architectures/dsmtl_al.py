"""DSMTL-AL, deep safe multi-task learning by architecture learning (Yue, PhD thesis 2023, Ch. 6,
§6.6, Eq. 6.7–6.10; spec thesis.md §5.6, §9.7–9.8)."""
from __future__ import annotations

import torch
from torch import nn

from mtl_platform.hookspecs import hookimpl
from mtl_platform.stages import BilevelSearch, DeriveStage, TrainStage, from_derived
from mtl_platform.stages.bilevel import search_section
from mtl_platform.stages.symmetric_start import SYMMETRIC_INIT

from .conal import CoNAL


class DSMTLAL(CoNAL):
    """DSMTL-AL: CoNAL's search space without conflict noticing, plus learned task weights,
    then retraining of the derived branches gated with the full public encoder.

    Search (Eq. 6.7–6.8): o_t = Σ_p β_t^p f_t(f_S(x, p−1), p, P−1) with β_t = softmax(b_t)
    (CoNAL's supernet, b_t = ``alpha``), and task weights w = softmax(c), c = 0 at start; the
    objective Σ_t w_t L_t, first-order bi-level: (b, c) on a D_val batch, then Θ on a D_tr
    batch (w detached), no conflict rule. The upper level is linear in w, so w drifts towards
    the tasks with the smallest validation loss (spec §5.6 [NOTE]: the thesis's learned
    weights show it; expect them to depend on loss scale).

    Derivation: p_t = argmax β_t and w, frozen. Retraining (Eq. 6.9–6.10): a ``tree`` with
    ``public_gate``, ĝ_t = α_t f_S(x) + (1 − α_t) f_t(f_S(x, p_t−1), p_t, P−1) for tasks with
    p_t < P (α_t = sigmoid(a_t), learned), from fresh weights on the full training set, with
    the ``fixed`` weighting applying the learned w (the default; any configured weighting
    replaces it, as in the thesis's Table 6.7).
    """

    name = "dsmtl_al"
    default_weighting = {"name": "fixed"}
    params = (search_section(SYMMETRIC_INIT, help="DSMTL-AL's branch and task-weight search (Eq. 6.8)"),)

    def __init__(self, tasks, encoder_factory, head_factory, **params):
        super().__init__(tasks, encoder_factory, head_factory, **params)
        self.task_logits = nn.Parameter(torch.zeros(len(self.tasks)))

    @classmethod
    def stage_plan(cls, config, *, domain, registry):
        return [BilevelSearch("search", weighting=lambda ctx: {"name": "ew"}), DeriveStage("derive", source="search"),
                TrainStage("retrain", configure=from_derived("derive"))]

    def architecture_parameters(self):
        return [*self.alpha.values(), self.task_logits]

    def search_loss_weights(self) -> torch.Tensor:
        """w = softmax(c), the search objective's task weights (Eq. 6.7)."""
        return torch.softmax(self.task_logits, 0)

    def search_state(self) -> dict:
        weights = self.search_loss_weights().detach().tolist()
        return {**super().search_state(), "task_weights": dict(zip(self.tasks, weights))}

    @classmethod
    def checked_weighting(cls, weighting, tasks):
        """A ``fixed`` weighting left without weights takes the learned ones in retraining;
        until the search has run, equal placeholders stand in for them."""
        if weighting["name"] == "fixed" and weighting.get("weights") is None:
            return dict(weighting, weights=dict.fromkeys(tasks, 1.0))
        return weighting

    def derive(self) -> dict:
        """The gated tree of the argmax branch points, and the ``fixed`` weighting of the
        learned task weights that retraining applies unless another weighting is configured."""
        state = self.search_state()
        tree = {"name": "tree", "branch_points": state["branch_points"], "public_gate": True}
        return {"architecture": tree, **state, "weighting": {"name": "fixed", "weights": state["task_weights"]}}


@hookimpl
def mtl_register(registry):
    registry.add_architecture(DSMTLAL)
