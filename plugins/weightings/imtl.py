"""IMTL-G: impartial gradient balance (Liu et al., "Towards Impartial Multi-task Learning", ICLR 2021, §3.2)."""
import torch

from mtl_platform.contracts import Needs, Weighting
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param

from ._solvers import tiny, working_gram


def imtl_weights(gram, rcond=None):
    """IMTL-G's α (m,) from the Gramian: Σ α = 1 and d = Σ α_t g_t has equal projections d·u_t.

    With n_t = ‖g_t‖ and the cosine matrix K = G/(n nᵀ): d·u_t = (K β)_t for β = α ∘ n, so
    the conditions are K β = c·1 with Σ β_t/n_t = 1, solved by z = K⁺1, α = (z/n)/Σ(z/n).
    K⁺ is the pseudo-inverse (eigenvalues below ``rcond · λ_max`` dropped; null:
    m · machine-epsilon of ``gram``'s dtype); computed in float64 (float32 on MPS).
    """
    out_dtype = gram.dtype
    m = gram.shape[0]
    rtol = m * torch.finfo(out_dtype).eps if rcond is None else float(rcond)
    g = working_gram(gram)
    diag = torch.diagonal(g).clamp_min(0)
    nonzero = diag > diag.amax() * 1e-30
    n = diag.clamp_min(tiny(g)).sqrt()
    k = torch.where(nonzero[:, None] & nonzero[None, :], g / (n[:, None] * n[None, :]), torch.zeros_like(g))
    ones = nonzero.to(g.dtype)
    z = torch.linalg.pinv(k, rtol=rtol, hermitian=True) @ ones
    rounding = 64 * m * torch.finfo(g.dtype).eps
    # 1 has no component in the range of K beyond rounding: no direction has a nonzero common
    # projection, and z is rounding noise that the normalisation below would blow up
    reachable = torch.linalg.vector_norm(k @ z) > rounding * ones.sum().sqrt()
    beta = torch.where(reachable, z, torch.zeros_like(z)) / n
    total = beta.sum()
    defined = total.abs() > rounding * beta.abs().sum()      # Σ(z/n) is not a cancellation to rounding
    alpha = torch.where(defined, beta / torch.where(defined, total, torch.ones_like(total)), torch.zeros_like(beta))
    return alpha.to(out_dtype)


class IMTL(Weighting):
    """IMTL-G (Liu et al. ICLR 2021): the combination of task gradients whose projections onto every unit task
    gradient are equal.

    Liu, Li, Kuang, Xue, Chen, Yang, Liao, Zhang, "Towards Impartial Multi-task Learning",
    ICLR 2021, §3.2 (gradient balance): find d = Σ_t α_t g_t with Σ_t α_t = 1 and
    d·u_1 = d·u_t for all t (u_t = g_t/‖g_t‖). The paper's closed form is
    ``α_{2:m} = g_1 Uᵀ (D Uᵀ)⁻¹``, ``α_1 = 1 − Σ α_{2:m}`` with rows D_t = g_1 − g_t and
    U_t = u_1 − u_t. This implementation solves the same linear conditions in a symmetric,
    scale-free form (``imtl_weights``): with the cosine matrix K = G/(n nᵀ), z = K⁺1 and
    α = (z/n)/Σ(z/n) — identical to the closed form whenever it exists (the tests check
    this), but permutation equivariant and defined when D Uᵀ is singular.

    Singular systems (linearly dependent gradients): K⁺ is a pseudo-inverse with relative
    eigenvalue cutoff ``rcond`` (null: m · machine epsilon of the Gramian's dtype), i.e. the
    minimum-norm least-squares solution. Documented results: identical gradients g give
    α = 1/m each and d = g; identical directions g_t = c_t u give α_t ∝ 1/c_t and
    d = (harmonic mean of the c_t) · u; a zero gradient gets weight 0 and is ignored.
    The common projection d·u_t = 1/Σ(z/n) can be negative for strongly conflicting
    gradients (the paper's α has the same property); α is not constrained to be ≥ 0. Where the
    conditions leave no direction with a nonzero common projection — 1 has no component in the
    range of K (e.g. an even number of exactly opposite gradients) or Σ(z/n) cancels to within
    rounding — the common projection 1/Σ(z/n) is unbounded and α is 0: the update is d = 0,
    the one solution with equal (zero) projections, instead of rounding noise scaled by 1/0.

    Only the gradient part (IMTL-G) is implemented; the paper's loss part (IMTL-L, learned
    loss scales) is a separate loss weighting. A gradient method (DESIGN.md §3.2): the heads
    get the unweighted ∇Σ L_t.
    """

    name = "imtl"
    needs = Needs.GRAMIAN
    scales_heads = False
    params = (
        Param("rcond", float, None, "relative eigenvalue cutoff of the pseudo-inverse (null: m·dtype eps)",
              optional=True, bounds="[0, 1)"),
    )

    def weights(self, losses, gram=None, **computed):
        if gram is None:
            raise TypeError("imtl needs the Gramian: call weights(losses, gram=G)")
        return imtl_weights(gram, self.rcond)


@hookimpl
def mtl_register(registry):
    registry.add_weighting(IMTL)
