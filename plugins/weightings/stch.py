"""Smooth Tchebycheff scalarisation (Lin, Zhang, Liu, Zhang, Zhang, ICML 2024)."""
import torch

from mtl_platform.contracts import Weighting
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param

FLOOR = 1e-20   # losses are floored here before the log (the authors' code adds 1e-20)


class STCH(Weighting):
    """STCH (Lin et al. ICML 2024): smooth Tchebycheff scalarisation μ log Σ_t exp(ℓ_t/μ) of the
    log-normalised losses.

    Lin, Zhang, Liu, Zhang, Zhang, "Smooth Tchebycheff Scalarization for Multi-Objective
    Optimization", ICML 2024, Eq. 9: ``g_μ(x) = μ log Σ_t exp(λ_t (f_t(x) − z*_t)/μ)``, a smooth
    upper bound of the Tchebycheff scalarisation max_t λ_t (f_t − z*_t) that tends to it as
    μ → 0. For multi-task learning (the paper's §5 experiments and the authors' code) the
    objectives are the log-normalised losses ``ℓ_t = log(L_t / n_t)`` with a nadir estimate
    n_t, the ideal point z* = 0 in that space and λ = 1, and the objective is multiplied by m.
    Its gradient gives the loss weights ``w_t = m · softmax(ℓ/μ)_t / L_t``.

    Nadir and warm-up (what the paper leaves to the code): for the first ``warmup_epochs``
    epochs the objective is Σ_t log L_t (weights 1/L_t), and the nadir is the mean training
    loss per task over the last warm-up epoch (``epoch_end``; the authors' code averages over
    one more epoch, during which it still trains on Σ log L). With ``warmup_epochs: 0`` the
    nadir is 1 (unnormalised losses). Losses are floored at 1e-20 before the log. The state
    (nadir, epoch count) is checkpointed, and the warm-up/STCH switch is a tensor flag (no host
    read per batch). One task: w = 1/L (so d ∝ ∇L). A loss weighting: every parameter gets
    ∇ Σ_t w_t L_t. Partial labels (``absent_tasks = "own"``): the softmax and the factor m are
    taken over the present tasks; an absent task gets weight 0.
    """

    name = "stch"
    promises = ("nonnegative",)
    absent_tasks = "own"
    params = (
        Param("mu", float, 1.0, "smoothing μ > 0 (→ 0: the Tchebycheff max)", bounds="(0, inf)"),
        Param("warmup_epochs", int, 4, "epochs of Σ log L_t before STCH; the last one's mean losses are the nadir",
              bounds="[0, inf)"),
    )

    def setup(self):
        m = self.num_tasks
        self.register_buffer("nadir", torch.ones(m))
        self.register_buffer("epochs_seen", torch.zeros((), dtype=torch.long))

    def weights(self, losses, present=None, **computed):
        floored = losses.detach().clamp_min(FLOOR)
        alive = torch.ones_like(floored, dtype=torch.bool) if present is None else present
        scaled = (floored.log() - self.nadir.to(floored).clamp_min(FLOOR).log()) / self.mu
        soft = torch.softmax(torch.where(alive, scaled, torch.full_like(scaled, float("-inf"))), dim=0)
        count = alive.to(floored.dtype).sum()
        smooth = count * torch.nan_to_num(soft) / floored
        warm = 1.0 / floored
        w = torch.where(self.epochs_seen < self.warmup_epochs, warm, smooth)
        return torch.where(alive, w, torch.zeros_like(w))

    def epoch_end(self, mean_losses):
        self.epochs_seen = self.epochs_seen + 1
        last_warmup = self.epochs_seen == self.warmup_epochs
        self.nadir = torch.where(last_warmup, mean_losses.to(self.nadir), self.nadir)


@hookimpl
def mtl_register(registry):
    registry.add_weighting(STCH)
