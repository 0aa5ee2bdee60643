"""UPGrad: unconflicting projection of gradients (Quinton & Rey, 2024, "Jacobian Descent for Multi-Objective Optimization")."""
import torch

from mtl_platform.contracts import Needs, Weighting
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param

from ._solvers import nonneg_qp, psd_gram, tiny, working_gram


class UPGrad(Weighting):
    """UPGrad (Quinton & Rey 2024): the mean of each task gradient projected onto the dual cone of all task
    gradients.

    Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", arXiv 2406.16232,
    2024 (the definition of the UPGrad aggregator): ``A(J) = (1/m) Σ_i π_J(g_i)`` with
    ``π_J(g) = argmin_{x : Jx ≥ 0} ‖x − g‖²``, the projection onto the dual cone
    ``{x : g_jᵀx ≥ 0 ∀j}``. Every π_J(g_i), hence their mean, has a nonnegative inner product
    with every task gradient: the update never conflicts with a task.

    In weights (the dual form the paper also uses to compute it): the Lagrangian of the
    projection gives ``π_J(g_i) = Jᵀ(e_i + λ⁽ⁱ⁾)`` with
    ``λ⁽ⁱ⁾ = argmin_{λ ≥ 0} ½ λᵀGλ + λᵀG e_i``; equivalently ``v⁽ⁱ⁾ = e_i + λ⁽ⁱ⁾`` minimises
    ``vᵀGv`` over ``v ≥ e_i``. The returned task weights are ``w = (1/m) Σ_i v⁽ⁱ⁾``. The m
    nonnegative QPs are solved together, exactly, by ``_solvers.nonneg_qp`` (a block
    principal pivoting guess of each support, then the batched Lawson–Hanson active-set
    method, every solve a batched Cholesky factorisation; float64 on the device;
    ``iterations`` active-set steps at most, null: 2m + 4; ``tol`` its relative stopping
    tolerance), on G without its negative eigenvalues (``_solvers.psd_gram``: rounding, e.g.
    of a float32 Gramian, can make G slightly indefinite; the projection is defined for a PSD
    G). The paper's code uses quadprog with a small ridge (``reg_eps``) because quadprog
    needs a positive definite G; this solver handles singular Gramians (its linear solves add
    a 1e-13 ridge in the cosine scale and undo it by a refinement step), so the problem itself
    gets no ridge. The largest
    violation of the cone constraints by the last solve, ``max_{i,j} max(0, −g_jᵀπ_J(g_i))``
    relative to ``max_j ‖g_j‖²`` (0 up to rounding), is kept in the non-persistent buffer
    ``residual``.

    Special cases: non-conflicting gradients (all g_iᵀg_j ≥ 0) give λ = 0, i.e. the plain
    mean (weights 1/m); identical gradients g give weights 1/m and d = g. A zero gradient is
    ignored by the constraints and gets no weight of its own. The weights are permutation
    equivariant. A gradient method (DESIGN.md §3.2): the heads get the unweighted ∇Σ L_t.

    Partial labels (``absent_tasks = "own"``): a task absent from the batch has a zero gradient,
    which constrains nothing; the mean is taken over the present tasks' projections only, so the
    update is UPGrad's over the present tasks (the zero row would otherwise scale it by
    |present|/m).
    """

    name = "upgrad"
    needs = Needs.GRAMIAN
    scales_heads = False
    promises = ("nonnegative", "no_conflict")
    absent_tasks = "own"
    params = (
        Param("iterations", int, None, "active-set steps of the QP solver (null: 2m+4)", optional=True,
              bounds="[1, inf)"),
        Param("tol", float, 1e-12, "relative tolerance of the QP solver", bounds="[0, inf)"),
    )

    def setup(self):
        self.register_buffer("residual", torch.zeros(()), persistent=False)

    def weights(self, losses, gram=None, present=None, **computed):
        if gram is None:
            raise TypeError("upgrad needs the Gramian: call weights(losses, gram=G)")
        g = working_gram(gram)
        m = g.shape[0]
        psd = psd_gram(g)                                          # rounding's negative eigenvalues removed
        lam = nonneg_qp(psd, psd, self.iterations, self.tol)      # row i: λ⁽ⁱ⁾ for c = G e_i
        v = torch.eye(m, dtype=g.dtype, device=g.device) + lam
        with torch.no_grad():
            scale = torch.diagonal(g).amax().clamp_min(tiny(g))
            self.residual = ((-(v @ g)).clamp_min(0).amax() / scale).to(self.residual)
        if present is None:
            return v.mean(0).to(gram.dtype)
        rows = present.to(g.dtype)
        return (rows * (rows[:, None] * v).sum(0) / rows.sum().clamp_min(1)).to(gram.dtype)


@hookimpl
def mtl_register(registry):
    registry.add_weighting(UPGrad)
