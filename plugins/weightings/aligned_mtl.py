"""Aligned-MTL: independent component alignment (Senushkin et al., CVPR 2023, Alg. 1 / Eq. 10)."""
import torch

from mtl_platform.contracts import Needs, Weighting
from mtl_platform.errors import UserError
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param

from ._solvers import cosine_eigen, working_gram

SCALES = ("min", "median", "rmse")


def alignment_matrix(gram, eps=None, scale="min"):
    """B (m × m) with ``B G B = σ² P_R``: the rows of ``B J`` are orthogonal with equal norm σ.

    ``B = σ U_R S_R⁻¹ U_Rᵀ`` with ``J = U S Vᵀ`` (so ``B = σ G^{-1/2}`` on the kept span R), from
    the Gramian alone and without squaring its condition number: the cosine matrix
    ``K = G/(‖g‖‖g‖ᵀ)`` is factored by ``eigh`` (eigenvalues ≤ ``eps · λ_max(K)`` are treated as
    0; null: m · float64 machine epsilon), ``K = F Fᵀ``, and the SVD of ``M = diag(‖g‖) F``
    (``M Mᵀ = G``) gives U and the singular values S of J. So the rank is decided on directions
    alone, whatever the norms: a task whose gradient is 1e-12 times another's still counts (an
    ``eigh`` of G itself cannot resolve eigenvalue ratios beyond 1/eps and would drop it). σ² is
    the smallest kept S² (``min``, the paper), their median (``median``) or mean (``rmse``). A
    zero gradient is no direction; all gradients zero: B = 0.
    """
    out_dtype = gram.dtype
    g = working_gram(gram)
    m = g.shape[0]
    rel = m * torch.finfo(g.dtype).eps if eps is None else float(eps)
    alive, norms, lam, vec, kept_k = cosine_eigen(g, rel)
    factor = vec * torch.where(kept_k, lam, torch.zeros_like(lam)).sqrt()
    left, sing, _ = torch.linalg.svd(torch.where(alive, norms, torch.zeros_like(norms))[:, None] * factor)
    keep = torch.arange(m, device=g.device) < kept_k.sum()           # S is sorted: the rank of F comes first
    inv = torch.where(keep, 1.0 / torch.where(keep, sing, torch.ones_like(sing)), torch.zeros_like(sing))
    squares = sing * sing
    count = keep.sum().clamp_min(1)
    if scale == "min":
        sigma2 = torch.where(keep, squares, torch.full_like(squares, float("inf"))).amin()
    elif scale == "median":
        sigma2 = torch.where(keep, squares, torch.full_like(squares, float("nan"))).nanmedian()
    else:
        sigma2 = torch.where(keep, squares, torch.zeros_like(squares)).sum() / count
    sigma2 = torch.where(keep.any(), sigma2, torch.zeros_like(sigma2))
    b = sigma2.sqrt() * (left * inv) @ left.T
    return b.to(out_dtype)


class AlignedMTL(Weighting):
    """Aligned-MTL (Senushkin et al. CVPR 2023): make the task gradients orthogonal with equal norms
    (condition number 1), then combine.

    Senushkin, Patakin, Kuznetsov, Konushin, "Independent Component Alignment for Multi-Task
    Learning", CVPR 2023, Algorithm 1 / Eq. 10: with the Gramian ``G = J Jᵀ = V Λ Vᵀ``, the
    aligned gradient matrix is ``Ĵ = B J``, ``B = σ_min V Λ^{-1/2} Vᵀ`` (σ_min = √λ_min, the
    smallest singular value of J), so that ``Ĵ Ĵᵀ = σ_min² I``: the aligned task directions
    ĝ_t = (B J)_t are orthogonal and all of norm σ_min. The update is ``Ĵᵀ p = Jᵀ (B p)`` for
    task preferences p, so the returned task weights are ``w = B p`` (``alignment_matrix``).

    Choices the paper leaves open, as parameters:

    - ``preferences`` (p): null means 1 for every task (LibMTL's choice, the same scale as EW);
      otherwise one float per task.
    - ``eps``: rank-deficient G (linearly dependent gradients) — LibMTL drops eigenvalues of G
      below m · machine epsilon · λ_max. Here the same rule is applied to the cosine matrix
      K = G/(‖g‖‖g‖ᵀ), so that it judges directions, not norms (on G it also dropped a task
      whose gradient is ~1e-8 times smaller than another's: with norms spread over 1e-6…1e6
      the update came out 1e12 times too large, ``tests/plugins/weightings/test_weighting_references.py``); null:
      m · float64 machine epsilon. σ_min is then the smallest *kept* singular value, and B
      projects onto the kept span, so nothing is divided by a vanishing eigenvalue and there
      is no NaN (``alignment_matrix``).
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
        Param("eps", float, None, "relative eigenvalue floor of the cosine matrix (null: m·float64 eps)",
              optional=True, bounds="[0, inf)"),
        Param("scale", str, "min", "σ²: smallest kept eigenvalue (paper), their median, or mean", choices=SCALES),
    )

    def setup(self):
        m = len(self.tasks)
        if self.preferences is not None and len(self.preferences) != m:
            raise UserError(f"aligned_mtl.preferences: got {len(self.preferences)} values for {m} tasks")
        prefs = torch.ones(m) if self.preferences is None else torch.tensor([float(p) for p in self.preferences])
        self.register_buffer("preferences", prefs, persistent=False)

    def weights(self, losses, gram=None, **computed):
        if gram is None:
            raise TypeError("aligned_mtl needs the Gramian: call weights(losses, gram=G)")
        b = alignment_matrix(gram, self.eps, self.scale)
        return b @ self.preferences.to(b)


@hookimpl
def mtl_register(registry):
    registry.add_weighting(AlignedMTL)
