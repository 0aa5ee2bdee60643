"""Krum and Multi-Krum (Blanchard, El Mhamdi, Guerraoui, Stainer, NeurIPS 2017)."""
import torch

from mtl_platform.contracts import Needs, Weighting
from mtl_platform.errors import UserError
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param

from ._solvers import working_gram


class Krum(Weighting):
    """Krum (Blanchard et al. 2017): the mean of the n_selected task gradients closest to their nearest
    neighbours.

    Blanchard, El Mhamdi, Guerraoui, Stainer, "Machine Learning with Adversaries: Byzantine
    Tolerant Gradient Descent", NeurIPS 2017, §4: with n gradients of which f = ``n_byzantine``
    may be adversarial, the score of gradient i is ``s(i) = Σ_{i→j} ‖g_i − g_j‖²`` over its
    n − f − 2 nearest other gradients; Krum returns the gradient of smallest score, Multi-Krum
    (§5) the mean of the ``n_selected`` of smallest score. The distances come from the
    Gramian, ``‖g_i − g_j‖² = G_ii + G_jj − 2G_ij`` (clamped at 0 against rounding), so the
    answer is task weights: 1/|S| on the selected set S, 0 elsewhere. The update is a mean
    (the scale of one gradient, not of EW's sum).

    Choices the paper leaves open: ``squared: false`` scores with plain distances (as TorchJD's
    ``Krum`` does) instead of the paper's squared ones; ties in the score at the
    ``n_selected``-th place (within rounding, 64 ε of the largest squared norm per neighbour)
    are all selected, so the answer does not depend on the task order (identical gradients
    give their mean); with fewer than f + 3 tasks present (no neighbour to score with) every
    score is 0 and Krum gives the mean of the present tasks — the guarantees of the paper need
    n > 2f + 2. A configuration with ``n_byzantine`` ≥ 1 and fewer than f + 3 tasks, or with
    ``n_selected`` > m, is refused. Partial labels (``absent_tasks = "own"``): absent tasks
    are neither scored nor neighbours, and n is the number of present tasks. A gradient method
    (DESIGN.md §3.2).
    """

    name = "krum"
    needs = Needs.GRAMIAN
    scales_heads = False
    promises = ("nonnegative",)
    absent_tasks = "own"
    params = (
        Param("n_byzantine", int, 0, "f: how many task gradients may be adversarial (outliers)", bounds="[0, inf)"),
        Param("n_selected", int, 1, "how many lowest-score gradients are averaged (1: Krum, more: Multi-Krum)",
              bounds="[1, inf)"),
        Param("squared", bool, True, "score with squared distances (paper) or plain ones (TorchJD)"),
    )

    def setup(self):
        m = self.num_tasks
        if self.n_selected > m:
            raise UserError(f"weighting.n_selected: {self.n_selected} is more than the {m} tasks")
        if self.n_byzantine > 0 and m < self.n_byzantine + 3:
            raise UserError(f"weighting.n_byzantine: {self.n_byzantine} needs at least "
                            f"{self.n_byzantine + 3} tasks (n_byzantine + 3), got {m}")

    def weights(self, losses, gram=None, present=None, **computed):
        if gram is None:
            raise TypeError("krum needs the Gramian: call weights(losses, gram=G)")
        g = working_gram(gram)
        m = g.shape[0]
        alive = torch.ones(m, dtype=torch.bool, device=g.device) if present is None else present.to(g.device)
        diag = torch.diagonal(g)
        dist = (diag[:, None] + diag[None, :] - 2 * g).clamp_min(0)
        allowance = 64 * torch.finfo(g.dtype).eps * diag.abs().amax()
        if not self.squared:
            dist, allowance = dist.sqrt(), allowance.sqrt()
        count = alive.sum()
        k = (count - self.n_byzantine - 2).clamp_min(0)
        eye = torch.eye(m, dtype=torch.bool, device=g.device)
        inf = torch.full((), float("inf"), dtype=g.dtype, device=g.device)
        outside = eye | ~alive[None, :] | ~alive[:, None]
        nearest = torch.where(outside, inf, dist).sort(dim=1).values
        taken = torch.arange(m, device=g.device)[None, :] < k
        scores = torch.where(taken, nearest, torch.zeros_like(nearest)).sum(1)
        scores = torch.where(alive, scores, inf)
        place = (count.clamp(max=self.n_selected) - 1).clamp_min(0)
        threshold = scores.sort().values.gather(0, place.reshape(1))
        chosen = alive & (scores <= threshold + allowance * k.clamp_min(1))
        w = chosen.to(g.dtype)
        return (w / w.sum().clamp_min(1)).to(gram.dtype)


@hookimpl
def mtl_register(registry):
    registry.add_weighting(Krum)
