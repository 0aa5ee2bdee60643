"""Fast Adaptive Multitask Optimization (Liu, Liang, Chen, Liu, NeurIPS 2023, Algorithm 1)."""
import torch

from mtl_platform.contracts import Weighting
from mtl_platform.errors import UserError
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param

EPS = 1e-8                                    # floor on L_t − L_t*, before the log
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8


class FAMO(Weighting):
    """FAMO (Liu et al. NeurIPS 2023): logits ξ, weights z = softmax(ξ) on the log-losses, ξ learned from the
    loss decrease.

    Liu, Liang, Chen, Liu, "FAMO: Fast Adaptive Multitask Optimization", NeurIPS 2023,
    §3, Algorithm 1. With D_t = L_t − L_t* (the ``min_losses``
    offset L_t*, 0 by default; floored at 1e-8):

    - the model's update is Σ_t c·z_t ∇log D_t = Σ_t (c·z_t / D_t) ∇L_t with
      c = (Σ_s z_s / D_s)^{-1}, so ``weights`` returns w_t = c·z_t / D_t. These weights sum to
      1 (Algorithm 1 exactly; not rescaled to m: with plain SGD, FAMO's step is 1/m of equal
      weighting's at the same learning rate);
    - after the optimizer step, ``after_step(closure)`` re-evaluates the losses on the same
      batch (one extra forward, no backward), δ_t = log D_t(before) − log D_t(after), and
      updates ξ with the gradient of zᵀδ w.r.t. ξ, z ⊙ (δ − zᵀδ), plus the decay γξ:
      ξ ← ξ − β(∇_ξ zᵀδ + γξ).

    The step on ξ is Adam with learning rate ``w_lr`` and L2 decay ``gamma`` (as the authors'
    released code does, torch's default Adam β₁, β₂, ε) or, with ``logit_update: sgd``, the
    literal plain step of Algorithm 1; both are implemented here in torch, with the Adam moments
    in buffers. ξ is a buffer, not an ``nn.Parameter``, so the model's optimizer never touches
    it. A task whose loss fell less than the z-average gets its logit raised. ξ starts at 0
    (equal z). State (ξ, Adam moments, step count, the losses before the step) checkpoints.
    A loss weighting: every parameter gets ∇ Σ_t w_t L_t.

    Partial labels (``absent_tasks = "own"``): a task absent from the batch (loss 0) gets weight
    0, the present tasks' weights are c·z_t/D_t normalised over them, and in the logit update
    the absent task's δ is the z-weighted mean of the present tasks' δ, so its logit moves only
    by the decay γξ.
    """

    name = "famo"
    scales_heads = True
    absent_tasks = "own"
    promises = ("nonnegative",)
    params = (
        Param("w_lr", float, 0.025, "learning rate β of the logits ξ", bounds="[0, inf)"),
        Param("gamma", float, 1e-3, "decay γ of the logits (L2 term of their update)", bounds="[0, inf)"),
        Param("min_losses", list, None, "per-task lower bounds L_t* subtracted before the log "
              "(null: all 0)", item=float, optional=True, bounds="(-inf, inf)"),
        Param("logit_update", str, "adam", "optimizer of the logits: adam (the authors' code) or "
              "sgd (Algorithm 1 literally)", choices=("adam", "sgd")),
    )

    def setup(self):
        m = self.num_tasks
        if self.min_losses is not None and len(self.min_losses) != m:
            raise UserError(f"weighting.min_losses: got {len(self.min_losses)} values, expected one per "
                            f"task ({m}: {', '.join(self.tasks)})")
        self.register_buffer("min_losses", torch.tensor([float(v) for v in (self.min_losses or [0.0] * m)]),
                             persistent=False)  # configuration, not state
        self.register_buffer("logits", torch.zeros(m))
        self.register_buffer("exp_avg", torch.zeros(m))
        self.register_buffer("exp_avg_sq", torch.zeros(m))
        self.register_buffer("updates", torch.zeros(()))
        self.register_buffer("losses_before", torch.ones(m))
        self._pending = False  # weights() ran since the last after_step
        self._present = None  # the tasks present in the batch of the pending weights (None: all)

    def shifted(self, losses):
        return (losses - self.min_losses.to(losses)).clamp_min(EPS)

    def weights(self, losses, present=None, **computed):
        z = torch.softmax(self.logits.to(losses.dtype), dim=0)
        d = self.shifted(losses.detach())
        scaled = z / d
        self.losses_before = losses.detach().to(self.losses_before)
        self._pending = True
        self._present = present
        if present is not None:
            scaled = torch.where(present, scaled, torch.zeros_like(scaled))
            return scaled / scaled.sum().clamp_min(torch.finfo(scaled.dtype).tiny)
        return scaled / scaled.sum()

    def logit_gradient(self, before, after, present=None):
        """∇_ξ zᵀδ + γξ for the losses before and after the step (both (m,)); an absent task's δ
        is the z-weighted mean of the present tasks' δ."""
        xi = self.logits
        z = torch.softmax(xi, dim=0)
        delta = self.shifted(before.to(xi)).log() - self.shifted(after.to(xi)).log()
        if present is not None:
            kept = torch.where(present, z, torch.zeros_like(z))
            mean = (kept * delta).sum() / kept.sum().clamp_min(torch.finfo(z.dtype).tiny)
            delta = torch.where(present, delta, mean)
        return z * (delta - (z * delta).sum()) + self.gamma * xi

    @torch.no_grad()
    def update(self, after):
        """One step on ξ from the losses re-evaluated after the model step."""
        grad = self.logit_gradient(self.losses_before, after, self._present)
        if self.logit_update == "sgd":
            self.logits = self.logits - self.w_lr * grad
            return
        b1, b2 = ADAM_BETAS
        self.updates = self.updates + 1
        self.exp_avg = b1 * self.exp_avg + (1 - b1) * grad
        self.exp_avg_sq = b2 * self.exp_avg_sq + (1 - b2) * grad * grad
        correction1 = 1 - b1 ** self.updates
        correction2 = 1 - b2 ** self.updates
        denom = (self.exp_avg_sq / correction2).sqrt() + ADAM_EPS
        self.logits = self.logits - self.w_lr * (self.exp_avg / correction1) / denom

    def after_step(self, closure):
        if not self._pending:  # no FAMO weights were applied since the last update
            return
        new = closure()
        self.update(torch.stack([new[t].detach().reshape(()) for t in self.tasks]))
        self._pending = False


@hookimpl
def mtl_register(registry):
    registry.add_weighting(FAMO)
