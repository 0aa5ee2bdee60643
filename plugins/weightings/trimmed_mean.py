"""Coordinate-wise trimmed mean (Yin, Chen, Ramchandran, Bartlett, ICML 2018)."""
import torch

from mtl_platform.contracts import Needs, Weighting
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param


class TrimmedMean(Weighting):
    """Trimmed mean (Yin et al. 2018): per coordinate, the mean of the task gradients without the trim largest
    and trim smallest values.

    Yin, Chen, Ramchandran, Bartlett, "Byzantine-Robust Distributed Learning: Towards Optimal
    Statistical Rates", ICML 2018, Definition 2 (the coordinate-wise β-trimmed mean, Option II
    of Algorithm 1): for every coordinate k, the values g_1k … g_mk are sorted, the ``trim``
    largest and ``trim`` smallest removed, and the remaining m − 2·trim averaged (the paper's
    β = trim/m). Each coordinate keeps other tasks, so the update is no combination of whole
    task gradients: the weighting needs the ``JACOBIAN`` and returns the aggregated gradient
    (P,), a mean (the scale of one gradient, not of EW's sum).

    Choices the paper leaves open: the trim is a number per side (as TorchJD's
    ``TrimmedMean``), not a fraction; it is capped at ⌊(n − 1)/2⌋ for n tasks, so with too few
    tasks the answer is the coordinate-wise median (for two tasks, their mean) instead of an
    error — the trimmed mean's own limit. In ``rep`` mode a coordinate is one entry of the
    batch's shared representation. Identical gradients give that gradient; one task: g₁; the
    answer does not depend on the task order. Partial labels (``absent_tasks = "own"``):
    absent tasks are left out, and the cap uses the number of present tasks. A gradient
    method (DESIGN.md §3.2).
    """

    name = "trimmed_mean"
    needs = Needs.JACOBIAN
    scales_heads = False
    absent_tasks = "own"
    params = (
        Param("trim", int, 1, "values removed per coordinate at each end (capped at ⌊(m−1)/2⌋)", bounds="[0, inf)"),
    )

    def weights(self, losses, jacobian=None, present=None, **computed):
        jac = jacobian
        m = jac.shape[0]
        alive = torch.ones(m, dtype=torch.bool, device=jac.device) if present is None else present.to(jac.device)
        count = alive.sum()
        trim = ((count - 1) // 2).clamp(min=0, max=self.trim)
        inf = torch.full((), float("inf"), dtype=jac.dtype, device=jac.device)
        ordered = torch.where(alive[:, None], jac, inf).sort(dim=0).values   # absent tasks sort last
        rank = torch.arange(m, device=jac.device)[:, None]
        kept = (rank >= trim) & (rank < count - trim)
        total = torch.where(kept, ordered, torch.zeros_like(ordered)).sum(0)
        return total / (count - 2 * trim).clamp_min(1).to(jac.dtype)


@hookimpl
def mtl_register(registry):
    registry.add_weighting(TrimmedMean)
