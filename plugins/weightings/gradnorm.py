"""GradNorm (Chen, Badrinarayanan, Lee, Rabinovich, ICML 2018, Eqs. 1–2)."""
import torch
from torch import nn

from mtl_platform.contracts import Needs, Weighting
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param

EPS = 1e-12


def present_mean(values, present):
    """The mean of ``values`` over the present tasks (0 when none is)."""
    kept = torch.where(present, values, torch.zeros_like(values))
    return kept.sum() / present.sum().clamp_min(1).to(values.dtype)


class GradNorm(Weighting):
    """GradNorm (Chen et al. ICML 2018): learnable task weights that equalise the weighted gradient norms,
    tilted by α.

    Chen, Badrinarayanan, Lee, Rabinovich, "GradNorm: Gradient Normalization for Adaptive
    Loss Balancing in Deep Multitask Networks", ICML 2018, §3.2:

    - G_t = ‖∇ w_t L_t‖ = w_t·√G_tt, read from the Gramian's diagonal; Ḡ = mean_t G_t;
    - L̃_t = L_t / L_t(0) (the inverse training rate), r_t = L̃_t / mean_s L̃_s;
    - Eq. 1: the target for G_t is Ḡ·r_t^α;
    - Eq. 2: L_grad = Σ_t |G_t − Ḡ·r_t^α|₁, differentiated w.r.t. the weights w only, the
      target Ḡ·r_t^α held constant (the paper's "fixed constant", so the weights do not
      drift to zero).

    ``aux_loss`` returns L_grad over the detached Gramian and losses, so its gradient reaches
    the weight parameter ``task_weights`` (initialised to 1) and nothing else; the trainer's
    optimizer steps it with the model.

    Renormalisation: the paper rescales w after every step so that Σ_t w_t = m. The engine
    cannot touch the parameter between the optimizer step and the next forward, so it is done
    twice: ``weights`` returns m·w⁺/Σw⁺ (w⁺ = w clamped to ≥ 1e-12, so the model's update
    always has positive weights summing to m), and ``after_step`` applies the same
    clamp-and-rescale to the parameter in place (a choice: the paper does not say what to do
    with a weight that an optimizer step pushes below zero).

    L_t(0) is the loss at the first call (``weights`` or ``aux_loss``), kept in a buffer; r_t
    uses L_t / max(L_t(0), 1e-12). The norms are taken in whichever gradient space the engine
    serves (the paper uses the last shared layer's weights W; the platform's default is all
    shared parameters in ``param`` mode, the shared representation in ``rep`` mode). A loss
    weighting: every parameter gets ∇ Σ_t w_t L_t with the returned weights.

    Partial labels (``absent_tasks = "own"``): a task absent from the batch (zero gradient, zero
    loss) is left out of Ḡ, of the mean of L̃ and of L_grad; if it is absent when L_t(0) is
    recorded, its L_t(0) is the mean of the present tasks' losses.
    """

    name = "gradnorm"
    needs = Needs.GRAMIAN
    scales_heads = True
    promises = ("nonnegative",)
    absent_tasks = "own"
    params = (Param("alpha", float, 1.5, "asymmetry α: how strongly slow tasks are pulled up", bounds="[0, inf)"),)

    def setup(self):
        m = self.num_tasks
        self.task_weights = nn.Parameter(torch.ones(m))
        self.register_buffer("initial_losses", torch.ones(m))
        self.register_buffer("has_initial", torch.zeros((), dtype=torch.bool))

    def _record_initial(self, losses, present=None):
        losses = losses.detach().to(self.initial_losses)
        if present is not None:
            mean = present_mean(losses, present)
            losses = torch.where(present, losses, mean)
        self.initial_losses = torch.where(self.has_initial, self.initial_losses, losses)
        self.has_initial = torch.ones_like(self.has_initial)

    def weights(self, losses, gram=None, present=None, **computed):
        self._record_initial(losses, present)
        w = self.task_weights.detach().clamp_min(EPS)
        return self.num_tasks * w / w.sum()

    def aux_loss(self, losses, gram, present=None, **computed):
        self._record_initial(losses, present)
        w = self.task_weights
        norms = gram.detach().diagonal().clamp_min(0).sqrt().to(w.dtype)
        weighted = w * norms                                         # G_t
        ratio = losses.detach().to(w.dtype) / self.initial_losses.clamp_min(EPS)
        if present is None:
            relative = ratio / ratio.mean().clamp_min(EPS)           # r_t
            target = (weighted.mean() * relative.pow(self.alpha)).detach()
            return (weighted - target).abs().sum()
        relative = ratio / present_mean(ratio, present).clamp_min(EPS)
        target = (present_mean(weighted, present) * relative.pow(self.alpha)).detach()
        gaps = (weighted - target).abs()
        return torch.where(present, gaps, torch.zeros_like(gaps)).sum()

    def after_step(self, closure):
        with torch.no_grad():
            self.task_weights.clamp_(min=EPS)
            self.task_weights.mul_(self.num_tasks / self.task_weights.sum())


@hookimpl
def mtl_register(registry):
    registry.add_weighting(GradNorm)
