"""Dynamic weight average (Liu, Johns, Davison, MTAN, CVPR 2019, Eq. 1)."""
import torch

from mtl_platform.contracts import Weighting
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param


class DWA(Weighting):
    """Dynamic weight average (Liu et al. CVPR 2019): w_k = K·softmax_k(r_k / T), r_k = L_k(e−1) / L_k(e−2).

    L_k(e) is task k's mean training loss of epoch e; for the first two epochs w_k = 1.
    The weights change once per epoch (``epoch_end``), never per batch.
    """

    name = "dwa"
    promises = ("nonnegative",)
    params = (Param("T", float, 2.0, "softmax temperature", bounds="(0, inf)"),)

    def setup(self):
        m = len(self.tasks)
        self.register_buffer("history", torch.zeros(2, m))  # [L(e-2), L(e-1)]
        self.register_buffer("epochs_seen", torch.zeros((), dtype=torch.long))
        self.register_buffer("current", torch.ones(m))

    def weights(self, losses, **computed):
        return self.current

    def epoch_end(self, mean_losses):
        self.history = torch.stack([self.history[1], mean_losses.to(self.history)])
        self.epochs_seen += 1
        ratio = self.history[1] / self.history[0].clamp_min(1e-12)
        dynamic = len(self.tasks) * torch.softmax(ratio / self.T, dim=0)
        self.current = torch.where(self.epochs_seen >= 2, dynamic, torch.ones_like(dynamic))


@hookimpl
def mtl_register(registry):
    registry.add_weighting(DWA)
