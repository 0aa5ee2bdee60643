"""Gradient Sign Dropout (Chen, Ngiam, Huang, Luong, Kretzschmar, Chai, Anguelov, NeurIPS 2020)."""
import torch

from mtl_platform.contracts import Needs, Weighting
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param


class GradDrop(Weighting):
    """Gradient sign dropout (Chen et al. NeurIPS 2020): per coordinate, keep only the positive or only the
    negative parts.

    Chen et al., "Just Pick a Sign: Optimizing Deep Multitask Models with Gradient Sign
    Dropout", NeurIPS 2020, §3 (Eqs. 1–2 and Algorithm 1). With the task gradients g_t (rows of
    the Jacobian) and per coordinate k:

    - Eq. 1, sign purity P_k = ½ (1 + Σ_t g_tk / Σ_t |g_tk|) ∈ [0, 1];
    - U_k ~ Uniform(0, 1) (torch's global generator, on the Jacobian's device);
    - Eq. 2, mask M_tk = 1[P_k > U_k]·1[g_tk > 0] + 1[P_k ≤ U_k]·1[g_tk < 0];
    - the update Σ_t (ℓ + (1−ℓ) M_t) ⊙ g_t with the leak ℓ (``leak``; the paper's ℓ_t, here
      one value for every task; ℓ = 0 is pure GradDrop, ℓ = 1 the plain sum).

    So every coordinate of the (ℓ = 0) update is either the sum of the positive parts or the
    sum of the negative parts; where all tasks agree in sign it is the plain sum (P = 1 keeps
    the positives surely, P = 0 the negatives), and identical task gradients give m times the
    common gradient. A coordinate with Σ|g| = 0 gets P = ½ and a zero update.

    The paper inserts GradDrop at an activation layer (with batch-separated activations,
    summing over the batch first); here it applies to whatever gradient space the engine
    serves: the shared parameters in ``param`` mode (each parameter coordinate is one k), the
    shared representation z in ``rep`` mode (each batch × feature entry is one k). Needs the
    ``JACOBIAN`` and returns the aggregated gradient (P,). A gradient method: parameters outside
    the gradient space get ∇ Σ_t L_t.
    """

    name = "graddrop"
    needs = Needs.JACOBIAN
    scales_heads = False
    params = (Param("leak", float, 0.0, "leak ℓ in [0, 1]: the fraction of every task's gradient "
                    "that bypasses the sign mask", bounds="[0, 1]"),)

    def weights(self, losses, jacobian=None, **computed):
        g = jacobian
        total = g.sum(0)
        magnitude = g.abs().sum(0)
        purity = 0.5 * (1 + total / magnitude.clamp_min(torch.finfo(g.dtype).tiny))
        u = torch.rand(g.shape[1], dtype=g.dtype, device=g.device)
        keep_positive = purity > u
        positive = g.clamp_min(0).sum(0)
        negative = g.clamp_max(0).sum(0)
        dropped = torch.where(keep_positive, positive, negative)
        return self.leak * total + (1 - self.leak) * dropped


@hookimpl
def mtl_register(registry):
    registry.add_weighting(GradDrop)
