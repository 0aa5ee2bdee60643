"""PCGrad, projecting conflicting gradients (Yu et al., NeurIPS 2020, Algorithm 1)."""
import torch

from mtl_platform.contracts import Needs, Weighting
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param

from ._solvers import other_tasks, scale_of, sequential_projection, symmetric, tiny


def pcgrad_coefficients(gram, order, eps=0.0):
    """Coefficient rows of g_i^PC (row i), given each task's order of the other tasks (m, m−1).

    Starting from g_i^PC = g_i, for every g_j in row i's order: if g_i^PCᵀ g_j < 0, then
    g_i^PC ← g_i^PC − (g_i^PCᵀ g_j / ‖g_j‖²) g_j (projection against the *original* g_j).
    Tasks with ‖g_j‖² ≤ eps·trace(G)/m are never projected against.
    """
    gram = symmetric(gram)
    eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    min_sq = eps * scale_of(gram) + tiny(gram)
    return sequential_projection(eye, eye, gram, order, lambda dot, own, other: dot < 0, min_sq)


class PCGrad(Weighting):
    """PCGrad (Yu et al. NeurIPS 2020): each g_i, against the others in random order, loses its component
    along any g_j it conflicts with; sum.

    Yu, Kumar, Gupta, Levine, Hausman, Finn, "Gradient Surgery for Multi-Task Learning",
    NeurIPS 2020, Algorithm 1: for each task i, g_i^PC = g_i; for each j ≠ i in random order,
    if g_i^PC·g_j < 0 then g_i^PC ← g_i^PC − (g_i^PC·g_j/‖g_j‖²) g_j; the update is Σ_i g_i^PC.
    Every projection is a linear combination of the task gradients, so the answer is the task
    weights w = Σ_i c_i (c_i the coefficients of g_i^PC), all inner products taken from G.

    Choices: ``shuffle`` — a fresh random order of the other tasks per task and per step, drawn
    from torch's global generator (the paper); False uses index order (deterministic). Algorithm
    1 excludes g_i itself from its own order. ``eps``: tasks with ‖g_j‖² ≤ eps·mean‖g‖²
    are not projected against (default 0: only exactly zero gradients, which never conflict).
    The result is the *sum* of the projected gradients (Algorithm 1), not their mean.

    At m = 2 the order is irrelevant and PCGrad equals GH's combined gradient exactly (GH
    Surprise 1, spec gradients.md §1.2): no negative inner product with either task gradient
    remains. With no conflict, or all gradients identical, w = 1 (the plain sum, m times the
    common gradient). A gradient method (DESIGN.md §3.2): the heads get the unweighted ∇Σ L_t.
    """

    name = "pcgrad"
    needs = Needs.GRAMIAN
    scales_heads = False
    promises = ("nonnegative",)
    params = (
        Param("shuffle", bool, True, "random order of the other tasks (torch's global RNG); false: index order"),
        Param("eps", float, 0.0, "skip g_j with ‖g_j‖² ≤ eps·mean ‖g‖² (0: exact definition)",
              bounds="[0, inf)"),
    )

    def weights(self, losses, gram=None, **computed):
        if gram is None:
            raise TypeError("pcgrad needs the Gramian: call weights(losses, gram=G)")
        order = other_tasks(gram.shape[0], self.shuffle, gram.device)
        return pcgrad_coefficients(gram, order, self.eps).sum(0)


@hookimpl
def mtl_register(registry):
    registry.add_weighting(PCGrad)
