"""Aligned-MTL: independent component alignment (Senushkin et al., CVPR 2023, Alg. 1 / Eq. 10)."""
import torch

from mtl_platform.contracts import Needs, Weighting
from mtl_platform.errors import UserError
from mtl_platform.gradients.solvers import working_dtype
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param

SCALES = ("min", "median", "rmse")


def alignment_matrix(gram, eps=None, scale="min"):
    """B (m × m) with ``B G B = σ² P_R``: the rows of ``B J`` are orthogonal with equal norm σ.

    ``G = V Λ Vᵀ`` (``torch.linalg.eigh``, float64); eigenvalues ≤ ``eps · λ_max`` (null:
    m · machine epsilon of ``gram``'s dtype, LibMTL's rank rule) are treated as 0; with R the
    kept ones, ``B = σ V_R Λ_R^{-1/2} V_Rᵀ`` and σ² = the smallest kept eigenvalue (``min``,
    the paper), their median (``median``) or mean (``rmse``). All gradients zero: B = 0.
    """
    out_dtype = gram.dtype
    m = gram.shape[0]
    rel = m * torch.finfo(out_dtype).eps if eps is None else float(eps)
    g = gram.to(working_dtype(gram))
    g = 0.5 * (g + g.T)
    lam, vec = torch.linalg.eigh(g)
    keep = lam > rel * lam.amax().clamp_min(0)
    kept = torch.where(keep, lam, torch.zeros_like(lam))
    inv_sqrt = torch.where(keep, kept.clamp_min(torch.finfo(g.dtype).tiny).rsqrt(), torch.zeros_like(lam))
    count = keep.sum().clamp_min(1)
    if scale == "min":
        sigma2 = torch.where(keep, lam, torch.full_like(lam, float("inf"))).amin()
    elif scale == "median":
        sigma2 = torch.where(keep, lam, torch.full_like(lam, float("nan"))).nanmedian()
    else:
        sigma2 = kept.sum() / count
    sigma2 = torch.where(keep.any(), sigma2, torch.zeros_like(sigma2))
    b = sigma2.sqrt() * (vec * inv_sqrt) @ vec.T
    return b.to(out_dtype)


class AlignedMTL(Weighting):
    """Aligned-MTL: make the task gradients orthogonal with equal norms (condition number 1), then combine.

    Senushkin, Patakin, Kuznetsov, Konushin, "Independent Component Alignment for Multi-Task
    Learning", CVPR 2023, Algorithm 1 / Eq. 10: with the Gramian ``G = J Jᵀ = V Λ Vᵀ``, the
    aligned gradient matrix is ``Ĵ = B J``, ``B = σ_min V Λ^{-1/2} Vᵀ`` (σ_min = √λ_min, the
    smallest singular value of J), so that ``Ĵ Ĵᵀ = σ_min² I``: the aligned task directions
    ĝ_t = (B J)_t are orthogonal and all of norm σ_min. The update is ``Ĵᵀ p = Jᵀ (B p)`` for
    task preferences p, so the returned task weights are ``w = B p`` (``alignment_matrix``).

    Choices the paper leaves open, as parameters:

    - ``preferences`` (p): null means 1 for every task (LibMTL's choice, the same scale as EW);
      otherwise one float per task.
    - ``eps``: rank-deficient G (linearly dependent gradients) — eigenvalues ≤ eps · λ_max are
      dropped (null: m · machine epsilon of the Gramian's dtype, LibMTL's rule); σ_min is then
      the smallest *kept* eigenvalue, and B projects onto the span of the kept eigenvectors,
      so nothing is divided by a vanishing eigenvalue and there is no NaN.
    - ``scale``: σ² is the smallest kept eigenvalue (``min``, the paper), or their median or
      mean (``median``, ``rmse``: the official code's alternative scale modes).

    Identical gradients g (rank 1): B = 11ᵀ/m, so the weights are p̄ = mean(p) each and the
    update is m · p̄ · g (= m g, the plain sum, with the default preferences). A gradient method
    (DESIGN.md §3.2): the heads get the unweighted ∇Σ L_t.
    """

    name = "aligned_mtl"
    needs = Needs.GRAMIAN
    scales_heads = False
    params = (
        Param("preferences", list, None, "task preferences p, one per task (null: all 1)", item=float,
              optional=True, bounds="[0, inf)"),
        Param("eps", float, None, "relative eigenvalue floor (null: m·dtype eps)", optional=True, bounds="[0, inf)"),
        Param("scale", str, "min", "σ²: smallest kept eigenvalue (paper), their median, or mean", choices=SCALES),
    )

    def __init__(self, tasks, preferences=None, eps=None, scale="min", **params):
        super().__init__(tasks, preferences=preferences, eps=eps, scale=scale, **params)
        m = len(self.tasks)
        if preferences is not None and len(preferences) != m:
            raise UserError(f"aligned_mtl.preferences: got {len(preferences)} values for {m} tasks")
        if scale not in SCALES:
            raise UserError(f"aligned_mtl.scale: got {scale!r}, allowed: {', '.join(SCALES)}")
        self.eps = None if eps is None else float(eps)
        self.scale = scale
        prefs = torch.ones(m) if preferences is None else torch.tensor([float(p) for p in preferences])
        self.register_buffer("preferences", prefs, persistent=False)

    def weights(self, losses, gram=None, **computed):
        if gram is None:
            raise TypeError("aligned_mtl needs the Gramian: call weights(losses, gram=G)")
        b = alignment_matrix(gram, self.eps, self.scale)
        return b @ self.preferences.to(b)


@hookimpl
def mtl_register(registry):
    registry.add_weighting(AlignedMTL)
