"""Nash-MTL: multi-task learning as a bargaining game (Navon et al., ICML 2022, Eq. 5, §3.3)."""
import torch

from mtl_platform.contracts import Needs, Weighting
from mtl_platform.contracts.weighting import working_dtype
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param

from ._solvers import bargaining_objective, bargaining_residual, nash_bargaining, symmetric, tiny, working_gram


class NashMTL(Weighting):
    """Nash-MTL (Navon et al. ICML 2022): weights α > 0 solving the bargaining condition Gα = 1/α; the update
    is Σ α_t g_t.

    Navon, Shamsian, Achituve, Maron, Kawaguchi, Chechik, Fetaya, "Multi-Task Learning as a
    Bargaining Game", ICML 2022. The Nash bargaining solution over the ball satisfies
    ``g_iᵀ d = 1/α_i`` with ``d = Σ_j α_j g_j``, i.e. ``(Gα)_i = 1/α_i`` (Eq. 5); it is unique
    when the gradients are linearly independent. At the solution ‖d‖² = αᵀGα = m.

    Solver (the paper, §3.3, approximates the solution by a sequence of convex problems
    (CCP) solved with cvxpy on the CPU): here the system is solved *exactly* in torch, on the
    device, as the stationary point of the strictly convex ``½αᵀGα − Σ log α_i`` by
    ``optim_niter`` damped-Newton steps
    (``_solvers.nash_bargaining``; 4–15 steps reach machine precision on
    well-posed problems). The start is whichever of the previous α and 1/‖g_t‖ (exact for
    orthogonal gradients) has the lower objective. The authors' code normalises G by its
    Frobenius norm only for the conditioning of the CCP program; its constraints use the raw
    scale, so the α here are on the same scale (α_t ∝ 1/‖g_t‖: scaling g_i by s scales α_i by
    1/s and leaves the others and d unchanged).

    - ``eps``: a scale-invariant ridge, ``G + eps · diag(G)``: the system is solved on the cosine
      matrix K = G/(‖g‖‖g‖ᵀ) + eps·I in β_t = α_t‖g_t‖, so the regulariser bends every task by
      the same relative amount, however different the gradient norms (a ridge relative to the
      *mean* ‖g_t‖² swamps the small tasks: at norms spread over 1e-3…1e3 it turned the update
      by up to 70°, ``tests/plugins/weightings/test_nash_mtl.py`` checks the direction against the exact
      solution). With some nonnegative combination of the gradients equal to 0 (exactly
      opposite gradients — Pareto stationarity) ``Gα = 1/α`` has no solution (α → ∞); the
      ridge makes one exist, with β of order eps^{-1/2}. A zero gradient takes no part: its
      α_t is 0. Close to stationarity the solve may not finish within ``optim_niter``: the
      residual max_t |β_t(Kβ)_t − 1| of the last solve (ridge included) is kept in the
      non-persistent buffer ``residual`` for logging.
    - ``max_norm`` (default 1.0, 0 = off): the authors (and LibMTL) call
      ``clip_grad_norm_(shared_parameters, max_norm)`` after the backward of Σ α_t L_t, so the
      shared-parameter update has norm ≤ max_norm. Here the same clip is expressed through the
      weights, on every step: ``w = α · min(1, max_norm / √(αᵀGα))``. Since ‖d‖ = √m at the
      solution, max_norm = 1 rescales every update to norm 1 for m ≥ 2.
    - ``update_weights_every``: α is recomputed every k-th call only, and reused in between
      (the authors' option, there to skip the per-task gradients: this engine computes the
      Gramian on every step anyway, so here it only skips the solve). The call counter is
      checkpointed (``get_extra_state``); the last α is the buffer ``alpha`` (starts at 1).

    Identical gradient directions (g_t = c_t u, ‖u‖ = 1, c_t > 0): α_t = 1/(c_t √m) and
    d = √m u before clipping — with identical gradients g, α_t = 1/(√m ‖g‖) each. One
    difference to the authors' code, on purpose: they backpropagate Σ α_t L_t, so task heads
    get α-weighted gradients; here, as for every gradient method (DESIGN.md §3.2,
    ``scales_heads = False``), the heads get the unweighted ∇Σ L_t.
    """

    name = "nash_mtl"
    needs = Needs.GRAMIAN
    scales_heads = False
    promises = ("nonnegative",)
    params = (
        Param("update_weights_every", int, 1, "recompute α every k-th step, reuse it in between", bounds="[1, inf)"),
        Param("optim_niter", int, 20, "damped-Newton steps per solve", bounds="[1, inf)"),
        Param("max_norm", float, 1.0, "clip the update's norm to this (0: off), as the authors' clip_grad_norm_",
              bounds="[0, inf)"),
        Param("eps", float, 1e-8, "ridge on G, relative to each task's ‖g_t‖² (G + eps·diag G)", bounds="[0, inf)"),
    )

    def setup(self):
        self.calls = 0
        self.register_buffer("alpha", torch.ones(len(self.tasks)))
        self.register_buffer("residual", torch.zeros(()), persistent=False)

    def get_extra_state(self):
        return {"calls": self.calls}

    def set_extra_state(self, state):
        self.calls = int(state["calls"])

    def solve(self, gram):
        """The bargaining α (m,) for ``gram``, warm-started from the stored α.

        Solved in the scale-free variables β_t = α_t‖g_t‖ on the cosine matrix K = G/(‖g‖‖g‖ᵀ),
        where ``Kβ = 1/β`` is the same system (Nash bargaining is equivariant to rescaling a
        task), with the ridge ``eps`` added to K's unit diagonal; a task with a zero gradient gets
        α_t = 0 and is left out of the bargaining.
        """
        g = working_gram(gram)
        m = g.shape[0]
        diag = torch.diagonal(g).clamp_min(0)
        alive = diag > diag.amax() * 1e-30
        norms = torch.where(alive, diag, torch.ones_like(diag)).sqrt()
        eye = torch.eye(m, dtype=g.dtype, device=g.device)
        both = alive[:, None] & alive[None, :]
        cosines = torch.where(both, g / (norms[:, None] * norms[None, :]), eye)
        reg = cosines + self.eps * eye
        fresh = torch.full_like(diag, (1.0 + self.eps) ** -0.5)          # exact for orthogonal gradients
        previous = (self.alpha.to(g) * norms).clamp_min(tiny(g))
        start = torch.where(bargaining_objective(reg, previous) < bargaining_objective(reg, fresh), previous, fresh)
        beta = nash_bargaining(reg, start, self.optim_niter)
        alpha = torch.where(alive, beta / norms, torch.zeros_like(beta))
        with torch.no_grad():
            self.residual = bargaining_residual(reg, beta).to(self.residual)
            self.alpha = alpha.to(self.alpha)
        return alpha

    def weights(self, losses, gram=None, **computed):
        if gram is None:
            raise TypeError("nash_mtl needs the Gramian: call weights(losses, gram=G)")
        if self.calls % self.update_weights_every == 0:
            alpha = self.solve(gram)
        else:
            alpha = self.alpha.to(working_dtype(gram))
        self.calls += 1
        if self.max_norm > 0:
            g = gram.to(alpha.dtype)
            norm = (alpha @ symmetric(g) @ alpha).clamp_min(0).sqrt()
            alpha = alpha * (self.max_norm / norm.clamp_min(tiny(norm))).clamp(max=1.0)
        return alpha.to(gram.dtype)


@hookimpl
def mtl_register(registry):
    registry.add_weighting(NashMTL)
