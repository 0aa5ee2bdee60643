"""FairGrad: α-fair resource allocation among the tasks (Ban & Ji, ICML 2024)."""
import torch
from torch import Tensor

from mtl_platform.contracts import Needs, Weighting
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param

from ._solvers import host_checks, tiny, working_gram

# trial step lengths of the line search: t_max · 2^-k, k = 0 … 29 (then 0: no move)
_HALVINGS = 30


def _objective_terms(k: Tensor, v: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    quad = 0.5 * (v * (v @ k)).sum(-1)
    if alpha == 1.0:
        return quad, v.log().sum(-1)
    p = 1.0 - 1.0 / alpha
    return quad, (v.pow(p) / p).sum(-1)


def fair_objective(k: Tensor, v: Tensor, alpha: float) -> Tensor:
    """``F(v) = ½ vᵀKv − Σ_i h(v_i)`` with ``h(v) = log v`` (α = 1) or ``v^p/p``, p = 1 − 1/α: strictly
    convex on v > 0, stationary exactly where ``Kv = v^{-1/α}``. ``v`` (..., m), rows batched."""
    quad, h = _objective_terms(k, v, alpha)
    return quad - h


def fair_residual(k: Tensor, v: Tensor, alpha: float) -> Tensor:
    """``max_i |v_i^{1/α} (Kv)_i − 1|``: 0 exactly at the α-fair weights (scale-free)."""
    return (v.pow(1.0 / alpha) * (k @ v) - 1).abs().amax(-1)


def fair_weights(k: Tensor, start: Tensor, alpha: float, iterations: int, tol: float = 1e-24,
                 check_every: int | str | None = "auto") -> Tensor:
    """v > 0 solving ``Kv = v^{-1/α}`` (FairGrad's Eq. 4 on a PSD matrix K), by damped Newton on the
    strictly convex ``F`` (:func:`fair_objective`) — Nash-MTL's ``_solvers.nash_bargaining`` is α = 1.

    Each step solves the Newton system in the scaled form ``(D K D + diag(v^{1−1/α})/α) u =
    −(v ∘ Kv − v^{1−1/α})``, D = diag(v) (the Hessian ``K + diag(v^{-1/α-1})/α`` scaled by D: a
    Cholesky of a positive definite matrix), and moves ``v ← v ∘ (1 + t u)``. The step t is the
    first of ``t_max·2^{-k}`` (k = 0…29, ``t_max = min(1, 0.99 / max_i(−u_i))`` keeps v > 0) that
    lowers F by at least ¼ t λ² (Armijo), λ² = uᵀ(…)u the Newton decrement, up to F's
    rounding (64 ulp of the magnitudes ½vᵀ|K|v + |Σh| of its terms: close to the solution the
    decrease is below F's last digit); when none does (or the Cholesky fails), the step is 0.
    F therefore never increases beyond rounding, v stays positive and finite, and near the
    solution the full step is taken (quadratic convergence). Newton's method is affine
    invariant: the answer does not depend on how the tasks are ordered.
    Stopping rule: a problem with ``λ² ≤ tol · m`` is frozen (on the device); on the CPU the
    loop also stops once every problem is frozen (one host read every 4 steps). Fallback:
    after ``iterations`` steps the last iterate is returned, the best point found (with no
    solution — Pareto-stationary gradients and no ridge — it is large and still finite).
    """
    check_every = host_checks(k, check_every)
    m = k.shape[-1]
    v = start
    p = 1.0 - 1.0 / alpha
    halvings = torch.pow(0.5, torch.arange(_HALVINGS, dtype=k.dtype, device=k.device))
    for step in range(iterations):
        kv = v @ k
        vp = v.pow(p)
        r = v * kv - vp                                           # D ∇F
        scaled = v.unsqueeze(-1) * k * v.unsqueeze(-2) + torch.diag_embed(vp / alpha)
        chol, info = torch.linalg.cholesky_ex(scaled)
        u = -torch.cholesky_solve(r.unsqueeze(-1), chol).squeeze(-1)
        u = torch.where((info == 0).unsqueeze(-1) & torch.isfinite(u), u, torch.zeros_like(u))
        lam2 = -(r * u).sum(-1)
        active = lam2 > tol * m
        if check_every and step % check_every == 0 and not bool(active.any()):
            break                                                  # the one host read, every few steps
        shrink = (-u).amax(-1).clamp_min(0)
        t_max = torch.minimum(torch.ones_like(shrink), 0.99 / shrink.clamp_min(tiny(shrink)))
        ts = t_max.unsqueeze(-1) * halvings                        # (..., trials)
        trials = v.unsqueeze(-2) * (1 + ts.unsqueeze(-1) * u.unsqueeze(-2))
        quad, h = _objective_terms(k, v, alpha)
        # F's rounding allowance: near the solution the decrease (≈ λ²/2) is below F's last digit
        size = 0.5 * (v * (v @ k.abs())).sum(-1) + h.abs()      # |v|ᵀ|K||v|: vᵀKv may cancel
        slack = 64 * torch.finfo(k.dtype).eps * size
        ok = fair_objective(k, trials, alpha) <= (quad - h + slack).unsqueeze(-1) - 0.25 * ts * lam2.unsqueeze(-1)
        first = ok.to(k.dtype).argmax(-1, keepdim=True)          # the longest step that passes
        t = torch.where(ok.any(-1, keepdim=True), ts.gather(-1, first), torch.zeros_like(first, dtype=k.dtype))
        v = torch.where(active.unsqueeze(-1), v * (1 + t * u), v)
    return v


class FairGrad(Weighting):
    """FairGrad (Ban & Ji ICML 2024): α-fair allocation, weights w > 0 solving Gw = w^{-1/α}; the update is
    Σ w_t g_t.

    Ban, Ji, "Fair Resource Allocation in Multi-Task Learning", ICML 2024. The update d
    maximises the α-fair utility ``Σ_i (g_iᵀd)^{1−α}/(1−α)`` (``Σ log g_iᵀd`` at α = 1) of the
    tasks' loss decreases over a ball; its KKT conditions give ``d = Σ_i w_i g_i`` with
    ``(Gw)_i = w_i^{-1/α}`` (Eq. 4, Algorithm 1), G = J Jᵀ. α = 1 is Nash-MTL's bargaining
    condition (proportional fairness), α → ∞ tends to max-min fairness, α → 0 to w = 1 (the
    sum, linear scalarisation). ``alpha`` default 1 as LibMTL.

    Solver (the authors and LibMTL run scipy's ``least_squares`` on ``Gw − w^{-1/α}`` with
    w ≥ 0, from 1/m, on the CPU): here the same system is solved in torch, in float64, on the
    device, as the stationary point of a strictly convex function by damped Newton
    (:func:`fair_weights`; its docstring gives the step, the stopping rule λ² ≤ 1e-24·m and
    the fallback), on ``K = G/s²`` with s² the mean squared task-gradient norm, and w =
    v·s^{-2α/(α+1)} (the exact rescaling of the solution). The start is the solution for
    orthogonal gradients, ``v_t = K_tt^{-α/(α+1)}``, not 1/m: far closer when the norms are
    spread, and it makes the answer a function of G alone (no state). ``iterations`` is the
    Newton budget (well-posed problems converge in 5–15 steps).

    Open choices, each documented: ``eps`` adds the scale-free ridge ``eps · diag(G)`` to G
    (as Nash-MTL's ``eps``): where some nonnegative combination of the gradients vanishes
    (exactly opposite gradients, a Pareto-stationary point) ``Gw = w^{-1/α}`` has no solution
    (w → ∞) and the authors' least squares stops wherever its tolerances stop it; the ridge
    makes a solution exist, of order eps^{-α/(α+1)}, and changes a well-posed answer by about
    eps relative. A task with a zero gradient takes no part (its equation ``0 = w^{-1/α}`` has
    no solution and is uncoupled from the others): its weight is 0 — so an absent task under
    partial labels (zero row) leaves exactly the answer over the present tasks. No update
    clipping (the authors' code has none). The authors backpropagate Σ w_t L_t, so their task
    heads get w-weighted gradients; here, as for every gradient method (DESIGN.md §3.2,
    ``scales_heads = False``), the heads get the unweighted ∇Σ L_t. Scaling every gradient
    by c scales w by c^{-2α/(α+1)} and d by c^{(1−α)/(1+α)} (at α = 1, ‖d‖² = wᵀGw = m
    whatever the scale); FairGrad is not invariant to rescaling one task unless α = 1.
    Identical gradients g: w_t = (m‖g‖²)^{-α/(α+1)} each; one task: w = ‖g‖^{-2α/(α+1)}. The
    residual ``max_t |w_t^{1/α}(Gw)_t − 1|`` of the last solve (ridge included) is logged with
    the diagnostics.
    """

    name = "fairgrad"
    needs = Needs.GRAMIAN
    scales_heads = False
    promises = ("nonnegative",)
    params = (
        Param("alpha", float, 1.0, "α of the α-fair utility (1: proportional fairness, large: max-min)",
              bounds="(0, inf)"),
        Param("iterations", int, 50, "damped-Newton steps per solve (budget)", bounds="[1, inf)"),
        Param("eps", float, 1e-8, "ridge on G, relative to each task's ‖g_t‖² (G + eps·diag G)", bounds="[0, inf)"),
    )

    def setup(self):
        self.register_buffer("residual", torch.zeros(()), persistent=False)

    def diagnostics(self):
        return {"fairgrad_residual": self.residual}

    def weights(self, losses, gram=None, **computed):
        if gram is None:
            raise TypeError("fairgrad needs the Gramian: call weights(losses, gram=G)")
        g = working_gram(gram)
        m = g.shape[0]
        diag = torch.diagonal(g).clamp_min(0)
        alive = diag > diag.amax() * 1e-30
        count = alive.sum().clamp_min(1)
        scale = torch.where(alive, diag, torch.zeros_like(diag)).sum() / count
        scale = torch.where(scale > tiny(scale), scale, torch.ones_like(scale))
        eye = torch.eye(m, dtype=g.dtype, device=g.device)
        both = alive[:, None] & alive[None, :]
        k = torch.where(both, (g + self.eps * torch.diag_embed(diag)) / scale, eye)   # a dead task: v_t = 1, uncoupled
        start = torch.diagonal(k).pow(-self.alpha / (self.alpha + 1))
        v = fair_weights(k, start, self.alpha, self.iterations)
        with torch.no_grad():
            self.residual = torch.where(alive.any(), fair_residual(k, v, self.alpha), torch.zeros_like(scale))
        w = torch.where(alive, v * scale.pow(-self.alpha / (self.alpha + 1)), torch.zeros_like(v))
        return w.to(gram.dtype)


@hookimpl
def mtl_register(registry):
    registry.add_weighting(FairGrad)
