"""ConFIG: the conflict-free direction (Liu, Chu, Thuerey, ICLR 2025; arXiv 2408.11104, 2024)."""
import torch

from mtl_platform.contracts import Needs, Weighting
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param

from ._solvers import cosine_eigen, tiny, working_gram


class ConFIG(Weighting):
    """ConFIG (Liu et al. 2024): the direction with equal cosine to every task gradient, scaled by the sum of
    their projections.

    Liu, Chu, Thuerey, "ConFIG: Towards Conflict-free Training of Physics Informed Neural
    Networks", arXiv 2408.11104 (2024; ICLR 2025), Eq. 2 (the two-or-more-task ConFIG):
    ``g_u = Û⁺ 1_m`` with ``Û`` the matrix of unit task gradients ``g_i/‖g_i‖`` (rows) and ``⁺``
    the Moore–Penrose pseudo-inverse, then ``g_c = (Σ_i g_iᵀ ĝ_u) ĝ_u`` with ``ĝ_u = g_u/‖g_u‖``.
    Where the unit gradients are linearly independent, ``ĝ_u`` has the same positive cosine
    with every task gradient, so g_c conflicts with none of them.

    From the Gramian alone: ``Û⁺ = Ûᵀ(ÛÛᵀ)⁺`` and ``ÛÛᵀ = K``, the cosine matrix
    ``K_ij = G_ij/(‖g_i‖‖g_j‖)``, so ``g_u = Jᵀc`` with ``c_i = (K⁺1)_i/‖g_i‖``,
    ``‖g_u‖² = cᵀGc`` and ``Σ_i g_iᵀ g_u = 1ᵀGc``: the task weights are
    ``w = c · (1ᵀGc)/(cᵀGc)`` (0 where ``cᵀGc`` is 0). K⁺ is taken from an eigendecomposition
    of K in float64; eigenvalues ≤ ``rcond · λ_max(K)`` count as 0 (null: m · float64 ε —
    the choice the paper leaves open: the Gramian squares Û's singular values, so this drops
    singular values below about 1.5e-8·√m of the largest, where the authors' ``pinv`` of Û in
    the gradients' dtype drops those below max(m, P) · ε of that dtype). A zero gradient has
    no direction: its row of Û is zero (as the authors' ``nan_to_num`` makes it) and its weight 0.

    Not implemented: the momentum variant M-ConFIG (§3.3), which alternates single-task
    backward passes — not a weighting of one Jacobian — and the paper's two-task closed form
    (equal to Eq. 2 for m = 2). Where Û has dependent rows and 1 is outside the range of K
    (e.g. exactly opposite gradients), ``K⁺1`` is its least-squares answer: exactly opposite
    pairs give a zero update, and the update may conflict with a task (so no ``no_conflict``
    promise). Identical gradients g give ``d = m·g``; one task: d = g₁. Weights are
    permutation equivariant. A gradient method (DESIGN.md §3.2).
    """

    name = "config_grad"
    needs = Needs.GRAMIAN
    scales_heads = False
    params = (
        Param("rcond", float, None, "relative eigenvalue floor of the cosine matrix K in its pseudo-inverse "
              "(null: m·float64 eps)", optional=True, bounds="[0, 1)"),
    )

    def weights(self, losses, gram=None, **computed):
        if gram is None:
            raise TypeError("config needs the Gramian: call weights(losses, gram=G)")
        g = working_gram(gram)
        m = g.shape[0]
        rel = m * torch.finfo(g.dtype).eps if self.rcond is None else float(self.rcond)
        alive, norms, lam, vec, kept = cosine_eigen(g, rel)
        inverse = torch.where(kept, 1.0 / torch.where(kept, lam, torch.ones_like(lam)), torch.zeros_like(lam))
        y = vec @ (inverse * (vec.sum(0)))                         # K⁺ 1
        c = torch.where(alive, y / norms, torch.zeros_like(y))
        gc = g @ c
        sq = (c * gc).sum()                                         # ‖g_u‖²
        length = gc.sum()                                           # Σ_i g_iᵀ g_u
        ok = sq > tiny(sq)
        return torch.where(ok, c * length / torch.where(ok, sq, torch.ones_like(sq)), torch.zeros_like(c)).to(gram.dtype)


@hookimpl
def mtl_register(registry):
    registry.add_weighting(ConFIG)
