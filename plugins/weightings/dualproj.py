"""DualProj: the mean gradient projected onto the dual cone (Quinton & Rey 2024; GEM's projection)."""
import torch

from mtl_platform.contracts import Needs, Weighting
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param

from ._solvers import nonneg_qp, psd_gram, working_gram


class DualProj(Weighting):
    """DualProj (Quinton & Rey 2024; Lopez-Paz & Ranzato 2017): the mean task gradient projected onto the dual
    cone of the task gradients.

    Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", arXiv 2406.16232,
    2024, which compares it with UPGrad: ``A(J) = π_J(Jᵀu)`` with ``u = 1/m`` (the mean) and
    ``π_J(x) = argmin_{y : Jy ≥ 0} ‖y − x‖²``, the projection onto the dual cone
    ``{y : g_jᵀy ≥ 0 ∀j}`` — the projection of Lopez-Paz & Ranzato's Gradient Episodic Memory
    (NeurIPS 2017, Eq. 11). The update never conflicts with a task. UPGrad projects each g_i
    and averages; DualProj averages first and projects once.

    In weights (the dual of the projection, the paper's Proposition 1):
    ``π_J(Jᵀu) = Jᵀv`` with ``v = argmin_{v ≥ u} vᵀGv``, i.e. ``v = u + λ``,
    ``λ = argmin_{λ ≥ 0} ½ λᵀGλ + λᵀGu``, solved exactly by the same torch solver as UPGrad
    (``_solvers.nonneg_qp`` on G without its rounding-made negative eigenvalues,
    ``_solvers.psd_gram``; ``iterations`` and ``tol`` as there). Choices the paper leaves
    open: the projection gets no ridge (the authors' code adds ``reg_eps`` to G for quadprog;
    the solver here handles singular Gramians), and the base vector is the mean (a
    preference vector is not offered).

    Special cases: non-conflicting gradients give λ = 0, weights 1/m (the mean); identical
    gradients g give d = g; one task: d = g₁. A zero gradient constrains nothing. Weights are
    ≥ u > 0 and permutation equivariant. A gradient method (DESIGN.md §3.2): the heads get the
    unweighted ∇Σ L_t. Partial labels (``absent_tasks = "own"``): the mean is taken over the
    present tasks (u_t = 1/|present| on them, 0 on the others), so the update is DualProj's over
    the present tasks.
    """

    name = "dualproj"
    needs = Needs.GRAMIAN
    scales_heads = False
    promises = ("nonnegative", "no_conflict")
    absent_tasks = "own"
    params = (
        Param("iterations", int, None, "active-set steps of the QP solver (null: 2m+4)", optional=True,
              bounds="[1, inf)"),
        Param("tol", float, 1e-12, "relative tolerance of the QP solver", bounds="[0, inf)"),
    )

    def weights(self, losses, gram=None, present=None, **computed):
        if gram is None:
            raise TypeError("dualproj needs the Gramian: call weights(losses, gram=G)")
        g = working_gram(gram)
        m = g.shape[0]
        if present is None:
            u = torch.full((m,), 1.0 / m, dtype=g.dtype, device=g.device)
        else:
            rows = present.to(g.dtype)
            u = rows / rows.sum().clamp_min(1)
        psd = psd_gram(g)
        lam = nonneg_qp(psd, (u @ psd)[None], self.iterations, self.tol)[0]
        return (u + lam).to(gram.dtype)


@hookimpl
def mtl_register(registry):
    registry.add_weighting(DualProj)
