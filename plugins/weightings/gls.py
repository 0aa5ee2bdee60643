"""Geometric Loss Strategy (Chennupati, Sistu, Yogamani, Rawashdeh, CVPR Workshops 2019)."""
import torch

from mtl_platform.contracts import Weighting
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param


class GLS(Weighting):
    """GLS (Chennupati et al. 2019): minimise the geometric mean of the task losses, (Π_t L_t)^{1/m}.

    Chennupati, Sistu, Yogamani, Rawashdeh, "MultiNet++: Multi-Stream Feature Aggregation and
    Geometric Loss Strategy for Multi-Task Learning", CVPR Workshops 2019, Eq. 4 (the
    geometric loss ``L = (Π_t L_t)^{1/m}``). Its gradient is ``Σ_t (L/(m L_t)) ∇L_t``, so the
    loss weights are ``w_t = exp(mean_s log L_s − log L_t)/m`` (computed in log space: no
    product overflows or underflows, whatever m). A task whose loss is small gets a large
    weight: the geometric mean is scale-free per task (a loss scaled by c scales the objective
    by c^{1/m} and leaves every relative weight w_t L_t unchanged).

    Choices the paper leaves open: losses are floored at ``eps`` before the log (the geometric
    mean's gradient is infinite at a zero loss; the authors assume positive losses); the
    weights are those of the geometric mean itself, not of its log (Σ_t log L_t / m, which
    would give 1/(m L_t)). One task: w = 1 (L itself). A loss weighting: every parameter gets
    ∇ Σ_t w_t L_t. Partial labels (``absent_tasks = "own"``): the geometric mean is taken over
    the present tasks; an absent task gets weight 0.
    """

    name = "gls"
    promises = ("nonnegative",)
    absent_tasks = "own"
    params = (Param("eps", float, 1e-8, "floor on each loss before the log (L_t ≥ eps)", bounds="(0, inf)"),)

    def weights(self, losses, present=None, **computed):
        logs = losses.detach().clamp_min(self.eps).log()
        if present is None:
            return torch.exp(logs.mean() - logs) / self.num_tasks
        rows = present.to(logs.dtype)
        count = rows.sum().clamp_min(1)
        mean = (rows * logs).sum() / count
        return torch.where(present, torch.exp(mean - logs) / count, torch.zeros_like(logs))


@hookimpl
def mtl_register(registry):
    registry.add_weighting(GLS)
