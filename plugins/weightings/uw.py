"""Uncertainty weighting (Kendall, Gal, Cipolla, CVPR 2018, Eq. 7–8)."""
import torch
from torch import nn

from mtl_platform.contracts import Weighting
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param


class UW(Weighting):
    """Uncertainty weighting (Kendall et al. CVPR 2018): learnable s_t = log σ_t², objective Σ_t ½e^{−s_t} L_t
    + ½ s_t.

    The model receives ∇ Σ_t w_t L_t with w_t = ½e^{−s_t} (detached); the s_t are learned
    through the auxiliary loss Σ_t ½e^{−s_t} L_t + ½ s_t over the detached losses, whose
    minimiser is s_t = log L_t. The weight is capped at the dtype's largest finite number, which
    only a task whose loss has stayed at 0 for a long time can reach.

    Partial labels (``absent_tasks = "own"``): a task absent from the batch contributes nothing to
    the auxiliary loss (its loss of 0 would otherwise push s_t down by one step every time).
    """

    name = "uw"
    promises = ("nonnegative",)
    absent_tasks = "own"
    params = (Param("init", float, 0.0, "initial log-variance s_t of every task", bounds="(-inf, inf)"),)

    def setup(self):
        self.log_var = nn.Parameter(torch.full((len(self.tasks),), self.init))

    def weights(self, losses, present=None, **computed):
        # a solved task (L_t → 0) drives s_t → −∞; e^{−s_t} would overflow to ∞ (and ∞·0 = NaN)
        return 0.5 * torch.exp(-self.log_var).clamp(max=torch.finfo(self.log_var.dtype).max)

    def aux_loss(self, losses, present=None, **computed):
        terms = 0.5 * torch.exp(-self.log_var) * losses + 0.5 * self.log_var
        if present is not None:
            terms = torch.where(present, terms, torch.zeros_like(terms))
        return terms.sum()


@hookimpl
def mtl_register(registry):
    registry.add_weighting(UW)
