"""Dual-Balancing Multi-Task Learning (Lin, Jiang, Ye, Zhang, Chen, Chen, Liu, Tsang, Kwok, 2023)."""
import torch

from mtl_platform.contracts import Needs, Weighting
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param


def rescaled_sum(ema):
    """Σ_t (max_s ‖ĝ_s‖ / ‖ĝ_t‖) ĝ_t, with a zero ĝ_t contributing nothing.

    Each row is first divided by its own norm (entries stay ≤ 1 in magnitude: no overflow however
    small the norm) and then multiplied by the largest norm, which is itself a row's norm (so
    finite). Norms are taken in float64, so squares neither overflow nor underflow in float32.
    """
    norms = torch.linalg.vector_norm(ema, dim=1, dtype=torch.float64)
    alive = norms > 0
    unit = ema / torch.where(alive, norms, torch.ones_like(norms)).to(ema.dtype).unsqueeze(1)
    unit = torch.where(alive.unsqueeze(1), unit, torch.zeros_like(unit))
    return unit.sum(0) * norms.max().to(ema.dtype)


class DBMTL(Weighting):
    """DB-MTL (Lin et al. 2023): log-loss gradients, smoothed by an EMA, rescaled to the largest task's norm.

    Lin et al., "Dual-Balancing for Multi-Task Learning", arXiv 2308.12029 (2023), §3,
    Eqs. 5–7 and its algorithm:

    - loss-scale balancing: each task contributes ∇log(L_t + ε) = ∇L_t / (L_t + ε) (Jacobian
      row t divided by its loss; ε = ``eps``, losses are assumed ≥ 0);
    - gradient-magnitude balancing: an EMA per task, ĝ_t ← β_k ĝ_t + (1−β_k) ∇log(L_t + ε),
      ĝ_t starting at 0 (no bias correction), with β_k = ``beta`` / k^``beta_sigma`` at step
      k = 1, 2, … (σ = 0, the default, is a constant rate β; the authors' released defaults are
      β = 0.9, σ = 0);
    - the update Σ_t (max_s ‖ĝ_s‖ / ‖ĝ_t‖) ĝ_t: every smoothed task direction at the largest
      smoothed norm.

    The update is built from the smoothed gradients, not from the current ones, so it is not a
    combination wᵀJ of this step's task gradients: the weighting needs the ``JACOBIAN`` and
    returns the aggregated gradient (P,). The EMA lives in that gradient space, in the buffer
    ``grad_ema`` of shape (m, P) — memory m×P, as much as the Jacobian itself — allocated at
    the first call on the Jacobian's device and dtype, and checkpointed with the step count. A
    change of P (a different gradient space) restarts the EMA. Because P must mean the same
    coordinates from step to step, the weighting forces ``param`` mode (``mode = "param"``; a
    representation's coordinates are different samples at every batch).

    When every task has the same log-gradient g at every step, the update is m·ĝ with
    ĝ = (1 − β^k)·g after k steps (constant β), i.e. it tends to m times the common
    log-gradient. A task whose EMA is exactly zero contributes nothing, in float32 and float64
    alike (``rescaled_sum``), and so does a task with L_t + ε ≤ 0 (its log is undefined; the
    method assumes L_t ≥ 0). A gradient method:
    parameters outside the gradient space get ∇ Σ_t L_t.
    """

    name = "db_mtl"
    needs = Needs.JACOBIAN
    scales_heads = False
    mode = "param"
    params = (
        Param("beta", float, 0.9, "EMA rate β of the log-loss gradients (0 ≤ β < 1)", bounds="[0, 1)"),
        Param("beta_sigma", float, 0.0, "decay σ of the rate, β_k = β / k^σ (0: constant)", bounds="[0, inf)"),
        Param("eps", float, 1e-8, "ε in log(L_t + ε)", bounds="[0, inf)"),
    )

    def setup(self):
        self.register_buffer("grad_ema", torch.zeros(self.num_tasks, 0))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def weights(self, losses, jacobian=None, **computed):
        jac = jacobian
        if self.grad_ema.shape != jac.shape:  # first call, or a different gradient space
            self.grad_ema = torch.zeros_like(jac)
            self.steps = torch.zeros_like(self.steps)
        self.steps = self.steps + 1
        rate = self.beta / self.steps.to(jac.dtype).pow(self.beta_sigma)
        scale = losses.detach().to(jac) + self.eps
        has_log = (scale > 0).unsqueeze(1)  # L_t + ε ≤ 0 has no log: the task contributes nothing
        log_grads = torch.where(has_log, jac / torch.where(has_log, scale.unsqueeze(1), torch.ones_like(jac[:, :1])),
                                torch.zeros_like(jac))
        ema = rate * self.grad_ema.to(jac) + (1 - rate) * log_grads
        self.grad_ema = ema
        return rescaled_sum(ema)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        saved = state_dict.get(prefix + "grad_ema")
        if saved is not None and saved.shape != self.grad_ema.shape:  # allocated lazily
            self.grad_ema = torch.zeros(saved.shape, dtype=saved.dtype, device=self.grad_ema.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


@hookimpl
def mtl_register(registry):
    registry.add_weighting(DBMTL)
