"""Loss normalisation by the first observed losses: w_t = 1 / L_t(0).

Dividing each task's loss by its value at the start of training brings tasks whose losses
live on different scales to a comparable scale (every weighted loss starts at 1). It is the
simple "loss normalisation" baseline; the same normalisation by L_t(0) is what GradNorm
(Chen et al., ICML 2018) uses to define its loss ratio L_t(t) / L_t(0). Unlike GradNorm,
the weights here are fixed after the first step and never adapt.
"""
import torch

from mtl_platform.contracts import Weighting
from mtl_platform.params import Param


class InitialLoss(Weighting):
    """Loss normalisation: w_t = 1 / max(L_t(0), eps), L_t(0) the losses of the first step seen.

    L(0) is kept in a buffer (checkpointed with the weighting's ``state_dict``, so a resumed
    run keeps the same weights) and captured on the device with ``torch.where`` on a ``seen``
    flag: no host sync, no Python branch on a tensor.
    """

    name = "initial_loss"
    params = (Param("eps", float, 1e-8, "floor on the first losses before inverting them", bounds="[0, inf)"),)

    def setup(self):
        self.register_buffer("initial", torch.ones(len(self.tasks)))   # L_t(0) once seen
        self.register_buffer("seen", torch.zeros((), dtype=torch.bool))

    def weights(self, losses, **computed):
        first = losses.detach().to(self.initial)
        self.initial.copy_(torch.where(self.seen, self.initial, first))
        self.seen.fill_(True)
        return 1.0 / self.initial.clamp_min(self.eps)
