"""DSelect-k (Hazimeh, Zhao, Chowdhery, Sathiamoorthy, Chen, Mazumder, Hong, Chi, NeurIPS 2021)."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mtl_platform.errors import UserError
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param

from ._experts import ExtractionNetwork


def smooth_step(t: Tensor, gamma: float) -> Tensor:
    """The cubic smooth-step: 0 for t ≤ −γ/2, 1 for t ≥ γ/2, −2t³/γ³ + 3t/(2γ) + 1/2 between
    (exactly 0 and 1 outside, so a saturated selector gives exactly zero weights)."""
    poly = -2.0 / gamma ** 3 * t ** 3 + 1.5 / gamma * t + 0.5
    return torch.where(t <= -gamma / 2, torch.zeros_like(t), torch.where(t >= gamma / 2, torch.ones_like(t), poly))


class DSelectKGate(nn.Module):
    """The per-example DSelect-k gate over ``num_experts`` experts.

    k single-expert selectors, each with ``b = ⌈log₂ n⌉`` binary-encoding logits
    ``z⁽ⁱ⁾(h) = W⁽ⁱ⁾h + c⁽ⁱ⁾``; selector i puts weight
    ``r(z⁽ⁱ⁾)_l = Π_j (S(z_j) if bit j of l is 1 else 1 − S(z_j))`` on code l (S: smooth-step),
    which sums to 1 over the 2^b codes and is one-hot once every S(z_j) is 0 or 1. The gate is
    ``q(h) = Σ_i softmax(α(h))_i r(z⁽ⁱ⁾(h))`` with ``α(h) = A h + a`` (a selector's weight;
    k = 1 has no α). When n is not a power of two, code l counts for expert ``l mod n`` (our
    choice: the weights still sum to 1 and a saturated selector still picks one expert).
    Initialisation (ours): W⁽ⁱ⁾ uniform in ±γ/(2√d) so the selectors start inside the
    smooth-step's transition region rather than saturated; biases uniform in ±γ/100.
    """

    def __init__(self, in_features: int, num_experts: int, k: int, gamma: float):
        super().__init__()
        self.k, self.gamma = k, gamma
        self.bits = max(1, math.ceil(math.log2(num_experts)))
        codes = torch.arange(2 ** self.bits)
        self.register_buffer("code_bits", ((codes[:, None] >> torch.arange(self.bits)) & 1).bool(), persistent=False)
        self.register_buffer("fold", nn.functional.one_hot(codes % num_experts, num_experts).float(),
                             persistent=False)
        self.selectors = nn.Linear(in_features, k * self.bits)
        bound = gamma / (2 * math.sqrt(in_features))
        nn.init.uniform_(self.selectors.weight, -bound, bound)
        nn.init.uniform_(self.selectors.bias, -gamma / 100, gamma / 100)
        self.alpha = nn.Linear(in_features, k) if k > 1 else None

    def selector_weights(self, h: Tensor) -> Tensor:
        """r(z⁽ⁱ⁾(h)) folded onto the experts: (N, k, n)."""
        s = smooth_step(self.selectors(h).view(h.shape[0], self.k, 1, self.bits), self.gamma)
        r = torch.where(self.code_bits, s, 1 - s).prod(dim=-1)  # (N, k, 2^b)
        return r @ self.fold.to(r.dtype)

    def forward(self, h: Tensor) -> Tensor:
        h = h.flatten(1)
        r = self.selector_weights(h)
        if self.alpha is None:
            return r[:, 0]
        return (torch.softmax(self.alpha(h), dim=-1).unsqueeze(-1) * r).sum(dim=1)


class DSelectK(ExtractionNetwork):
    """DSelect-k (Hazimeh et al., NeurIPS 2021, §3: the smooth-step, the single-expert
    selector via binary encoding and the DSelect-k gate; its per-example form for MTL).

    MMoE with the softmax gates replaced by DSelect-k gates: ``num_experts`` whole
    ``encoder_factory()`` copies, one :class:`DSelectKGate` per task choosing (at most) k of
    them, ``y_t = h_t(Σ_e q_t(x)_e f_e(x))``. The gate reads the flattened stage-0 output of
    expert 0 (the raw input's shape is not part of the encoder contract). The paper's optional
    entropy regulariser (pushing selectors to binary faster) is out of scope: sparsity comes
    from the smooth-step saturating during training.

    Parameter split: experts → ``shared_parameters()`` (per encoder stage in
    ``parameter_blocks()``); task t's gate and head → ``task_parameters(t)``. No
    ``architecture_parameters()``; ``has_rep`` False.

    Params: ``num_experts`` (int, 4), ``k`` (int, 2: experts selected per task, ≤ num_experts),
    ``gamma`` (float, 1.0: width γ of the smooth-step's transition region, > 0).
    """

    name = "dselect_k"
    params = (
        Param("num_experts", int, 4, "number of expert encoder copies", bounds="[1, inf)"),
        Param("k", int, 2, "experts each task's gate selects (at most num_experts)", bounds="[1, inf)"),
        Param("gamma", float, 1.0, "smooth-step transition width γ (> 0)", bounds="(0, inf)"),
    )

    def __init__(self, tasks, encoder_factory, head_factory, num_experts=4, k=2, gamma=1.0, **params):
        super().__init__(tasks, encoder_factory, head_factory, num_experts=num_experts, k=k, gamma=gamma, **params)
        if not 1 <= k <= num_experts:
            raise UserError(f"architecture dselect_k: k must be between 1 and num_experts ({num_experts}), got {k}")
        self.k, self.gamma = int(k), float(gamma)
        self._build(encoder_factory, head_factory, num_experts, 0, per_stage=False,
                    gate_factory=lambda d, n: DSelectKGate(d, n, self.k, self.gamma))


@hookimpl
def mtl_register(registry):
    registry.add_architecture(DSelectK)
