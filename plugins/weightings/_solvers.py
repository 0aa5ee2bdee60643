"""Small torch solvers on task Gramians, for the solver-based weightings (MGDA, UPGrad, …); private
to the built-in weightings (the core never imports it).

Every function is pure (tensors in, tensors out), runs on the device of its inputs, never
reads a tensor value on the host (no ``.item()``, no Python branch on a tensor) and has a
fixed iteration budget; convergence tests are per-problem masks evaluated on the device
(a converged problem is frozen, the loop still runs its budget). They are sized for the
task dimension m (a handful to a few dozen tasks), not for the parameter dimension.

They compute in :func:`mtl_platform.contracts.weighting.working_dtype` (float64 where available).

- :func:`project_simplex`: Euclidean projection onto the probability simplex.
- :func:`min_norm_two`: the closed-form minimiser of ``‖γ a + (1 − γ) b‖`` (Sener & Koltun).
- :func:`min_norm_simplex`: the minimum-norm point of the convex hull of the task gradients
  from their Gramian, exactly (Wolfe's active-set method); :func:`min_norm_frank_wolfe`, the
  same by Sener & Koltun's Frank–Wolfe (cheaper steps, approximate); :func:`simplex_kkt_gap`
  certifies an answer.
- :func:`nonneg_qp`: ``min ½xᵀQx + cᵀx`` over ``x ≥ 0`` for a batch of linear terms, exactly
  (Lawson–Hanson active set), used by UPGrad; :func:`nonneg_qp_residual` certifies it.
- :func:`nash_bargaining`: α > 0 with ``Gα = 1/α`` (Nash-MTL), by damped Newton on a
  strictly convex function; :func:`bargaining_residual` certifies it.
"""
from __future__ import annotations

import torch
from torch import Tensor

from mtl_platform.contracts.weighting import working_dtype

__all__ = ["project_simplex", "min_norm_two", "min_norm_simplex", "min_norm_frank_wolfe",
           "simplex_kkt_gap", "nonneg_qp", "nonneg_qp_residual", "nash_bargaining", "bargaining_objective",
           "bargaining_residual"]


def _tiny(like: Tensor) -> float:
    return torch.finfo(like.dtype).tiny


def _sym(gram: Tensor) -> Tensor:
    return 0.5 * (gram + gram.transpose(-1, -2))


def project_simplex(v: Tensor) -> Tensor:
    """Euclidean projection of each row of ``v`` (..., m) onto ``{x ≥ 0, Σ x = 1}``.

    The sort-based algorithm (Held, Wolfe & Crowder 1974; Duchi et al., ICML 2008): with
    ``u`` sorted in decreasing order, ``ρ = max{j : u_j − (Σ_{k≤j} u_k − 1)/j > 0}`` and
    ``x = max(v − θ, 0)``, ``θ = (Σ_{k≤ρ} u_k − 1)/ρ``. Branch-free and batched.
    """
    m = v.shape[-1]
    u, _ = torch.sort(v, dim=-1, descending=True)
    css = u.cumsum(-1) - 1.0
    idx = torch.arange(1, m + 1, dtype=v.dtype, device=v.device)
    cond = (u - css / idx) > 0
    rho = cond.sum(-1, keepdim=True).clamp_min(1)  # cond is a prefix; ≥ 1 always holds
    theta = css.gather(-1, rho - 1) / rho.to(v.dtype)
    return (v - theta).clamp_min(0)


def min_norm_two(aa: Tensor, ab: Tensor, bb: Tensor) -> Tensor:
    """γ ∈ [0, 1] minimising ``‖γ a + (1 − γ) b‖²`` given ``aᵀa``, ``aᵀb``, ``bᵀb``.

    Sener & Koltun (NeurIPS 2018), Algorithm 1: ``γ = (bᵀb − aᵀb) / ‖a − b‖²`` clipped to
    [0, 1]; ``a = b`` (zero denominator) gives γ = ½ by convention here (every γ is optimal).
    """
    den = aa - 2 * ab + bb
    raw = (bb - ab) / den.clamp_min(_tiny(den))
    return torch.where(den > 0, raw.clamp(0, 1), torch.full_like(raw, 0.5))


def simplex_kkt_gap(gram: Tensor, w: Tensor) -> Tensor:
    """Frank–Wolfe gap ``wᵀGw − min_i (Gw)_i`` (≥ 0; 0 exactly at the min-norm point)."""
    gw = (gram @ w.unsqueeze(-1)).squeeze(-1)
    return (w * gw).sum(-1) - gw.min(-1).values


def _affine_min_norm(gram: Tensor, support: Tensor, rtol: float) -> Tensor:
    """The minimiser of ``wᵀGw`` over ``{Σ w = 1, w_i = 0 off the support}`` (weights may be negative).

    Solved in the diagonally scaled variables ``y = diag(‖g_t‖) w``, where the quadratic form is
    the cosine matrix K (entries ≤ 1, so the pseudo-inverse tolerance means the same whatever
    the gradient scales): ``[K_SS, b_S; b_Sᵀ, 0] [y; μ] = [0; c]`` with ``b = (1/‖g‖)/‖1/‖g‖‖``,
    ``c = 1/‖1/‖g‖‖``. A singular K_SS (linearly dependent gradients) gives the minimum-norm
    solution of the (consistent) system — for identical gradients, equal weights.
    """
    m = gram.shape[-1]
    dt = gram.dtype
    diag = torch.diagonal(gram, dim1=-2, dim2=-1)
    floor = diag.amax(-1, keepdim=True) * 1e-30 + _tiny(gram)
    norms = (diag.clamp_min(0) + floor).sqrt()
    k = gram / (norms.unsqueeze(-1) * norms.unsqueeze(-2))
    active = support.to(dt)
    border = 1.0 / norms
    scale = border.norm(dim=-1, keepdim=True)
    b = border / scale * active
    eye = torch.eye(m, dtype=dt, device=gram.device)
    top = active.unsqueeze(-1) * k * active.unsqueeze(-2) + eye * (1 - active).unsqueeze(-1)
    a = torch.cat([torch.cat([top, b.unsqueeze(-1)], -1),
                   torch.cat([b, torch.zeros_like(scale)], -1).unsqueeze(-2)], -2)
    rhs = torch.cat([torch.zeros_like(border), 1.0 / scale], -1)
    sol = _refined_pinv_solve(a, rhs, rtol)
    v = sol[..., :m] / norms * active
    return v / v.sum(-1, keepdim=True)  # exact 1 up to rounding (the border row enforces it)


def _refined_pinv_solve(a: Tensor, rhs: Tensor, rtol: float, refine: int = 2) -> Tensor:
    """``a⁺ rhs`` for symmetric ``a`` (..., n, n), ``rhs`` (..., n), plus ``refine`` steps of iterative refinement.

    The eigendecomposition-based pseudo-inverse is accurate in the solution but not in the
    residual (about eps · cond(a)); refinement with the same a⁺ brings the residual down to
    rounding level, which the active-set tests (signs of gradients) depend on.
    """
    pinv = torch.linalg.pinv(a, rtol=rtol, hermitian=True)
    x = (pinv @ rhs.unsqueeze(-1)).squeeze(-1)
    for _ in range(refine):
        r = rhs - (a @ x.unsqueeze(-1)).squeeze(-1)
        x = x + (pinv @ r.unsqueeze(-1)).squeeze(-1)
    return x


def _quad(gram: Tensor, w: Tensor) -> Tensor:
    return (w * (gram @ w.unsqueeze(-1)).squeeze(-1)).sum(-1)


def _wolfe_steps(gram: Tensor, w: Tensor, steps: int, tol: float) -> Tensor:
    """Wolfe's minimum-norm-point algorithm (Math. Programming 11, 1976), branch-free, batched.

    State: weights w and a flag "w is the affine minimiser on its support (corral)". A major
    step (flag set and Frank–Wolfe gap > tol) adds the best vertex s = argmin (Gw)_s to the
    support; every step then computes the affine minimiser v on the support; if v ≥ 0 it is
    taken (flag set), else w moves towards v up to the first weight that reaches 0, which is
    dropped (flag cleared). Each step lowers wᵀGw or keeps w; it ends at the exact optimum
    after finitely many steps (in practice up to about twice the support size). A candidate
    that would raise wᵀGw (rounding in a degenerate system) is refused, and the next step
    may add a vertex again.
    """
    dt = gram.dtype
    diag = torch.diagonal(gram, dim1=-2, dim2=-1)
    floor = 1e-30 * diag.amax(-1)
    inf = torch.full((), float("inf"), dtype=dt, device=gram.device)
    corral = torch.zeros(w.shape[:-1], dtype=torch.bool, device=w.device)
    for _ in range(steps):
        gw = (gram @ w.unsqueeze(-1)).squeeze(-1)
        f = (w * gw).sum(-1)
        s = gw.argmin(-1, keepdim=True)
        gap = f - gw.gather(-1, s).squeeze(-1)
        add = corral & (gap > tol * torch.maximum(f, floor))
        onehot = torch.zeros_like(w, dtype=torch.bool).scatter(-1, s, True)
        support = (w > 0) | (onehot & add.unsqueeze(-1))
        v = _affine_min_norm(gram, support, rtol=1e-13)
        blocked = support & (v <= 0)
        full = ~blocked.any(-1)
        ratio = torch.where(blocked, w / (w - v).clamp_min(_tiny(w)), inf)
        t = ratio.amin(-1, keepdim=True).clamp(0, 1)
        moved = w + t * (v - w)
        moved = torch.where(blocked & (ratio <= t), torch.zeros_like(moved), moved).clamp_min(0)
        moved = moved / moved.sum(-1, keepdim=True)
        new = torch.where(full.unsqueeze(-1), v.clamp_min(0), moved)
        new = new / new.sum(-1, keepdim=True)
        better = _quad(gram, new) <= f * (1 + 1e-12) + floor
        w = torch.where(better.unsqueeze(-1), new, w)
        corral = torch.where(better, full, torch.ones_like(corral))
    return w


def min_norm_simplex(gram: Tensor, iterations: int | None = None, tol: float = 1e-12) -> Tensor:
    """Weights ``w`` on the simplex minimising ``wᵀGw``: ``d = Σ w_t g_t`` is the min-norm point of conv{g_t}.

    ``gram`` (..., m, m) is the Gramian ``G = J Jᵀ`` (a batch of problems is solved at once).
    Wolfe's exact active-set method (``_wolfe_steps``) from the barycentre ``w = 1/m`` (so
    identical gradients keep equal weights), ``iterations`` steps (default 2m + 6; the worst
    cases measured on random, near-parallel, near-opposite, rank-2, mixed and 1e-3..1e3-scaled
    families needed 2, 5, 12 and 35 steps for m = 3, 5, 10, 20). Convergence test on the
    device: a problem whose Frank–Wolfe gap ``wᵀGw − min_i (Gw)_i`` is ≤ ``tol ·``
    max(wᵀGw, 1e-30 · max_i G_ii) adds no vertex and stays where it is. The KKT conditions of
    the answer (``(Gw)_i ≥ wᵀGw`` for all i, equality on the support) can be checked with
    :func:`simplex_kkt_gap`. m = 1 gives w = 1; m = 2 uses the closed form
    (:func:`min_norm_two`, ½ each for identical gradients) and ignores ``iterations``.
    """
    out_dtype = gram.dtype
    g = _sym(gram.to(working_dtype(gram)))
    m = g.shape[-1]
    w = torch.full((*g.shape[:-2], m), 1.0 / m, dtype=g.dtype, device=g.device)
    if m == 1:
        return w.to(out_dtype)
    if m == 2:
        gamma = min_norm_two(g[..., 0, 0], g[..., 0, 1], g[..., 1, 1])
        return torch.stack([gamma, 1 - gamma], -1).to(out_dtype)
    w = _wolfe_steps(g, w, 2 * m + 6 if iterations is None else iterations, tol)
    return w.to(out_dtype)


def min_norm_frank_wolfe(gram: Tensor, iterations: int = 250, tol: float = 1e-12) -> Tensor:
    """The same problem as :func:`min_norm_simplex`, by Frank–Wolfe (Sener & Koltun's solver).

    Frank–Wolfe with the exact line search of Sener & Koltun (NeurIPS 2018, Alg. 2) in its
    *pairwise* form (Lacoste-Julien & Jaggi, NeurIPS 2015), which converges linearly where the
    plain form converges as O(1/k): from the barycentre, each step moves weight from the worst
    active vertex ``a = argmax_{w_i > 0} (Gw)_i`` to the best vertex ``s = argmin_i (Gw)_i``
    with the exact two-point line search (:func:`min_norm_two`), capped at ``w_a`` (a "drop"
    step sets ``w_a`` to exactly 0). A problem whose Frank–Wolfe gap is ≤ ``tol ·``
    max(wᵀGw, 1e-30 · max_i G_ii) is frozen. Each step is a handful of elementwise ops (no
    linear solve), but ill-conditioned problems (near-opposite gradients, a min-norm point
    near 0) can need far more than ``iterations`` steps: the answer is then approximate.
    """
    out_dtype = gram.dtype
    g = _sym(gram.to(working_dtype(gram)))
    m = g.shape[-1]
    batch = g.shape[:-2]
    w = torch.full((*batch, m), 1.0 / m, dtype=g.dtype, device=g.device)
    diag = torch.diagonal(g, dim1=-2, dim2=-1)
    floor = 1e-30 * diag.amax(-1)
    neg_inf = torch.full((), float("-inf"), dtype=g.dtype, device=g.device)
    for _ in range(iterations if m > 1 else 0):
        gw = (g @ w.unsqueeze(-1)).squeeze(-1)
        f = (w * gw).sum(-1)
        s = gw.argmin(-1, keepdim=True)
        a = torch.where(w > 0, gw, neg_inf).argmax(-1, keepdim=True)
        gs, ga = gw.gather(-1, s), gw.gather(-1, a)
        row_s = g.gather(-2, s.unsqueeze(-1).expand(*batch, 1, m)).squeeze(-2)
        wa = w.gather(-1, a)
        # the step γ from w towards w + γ(e_s − e_a): the two-point problem between the current
        # point and the one with w_a moved to s, solved in closed form and capped at w_a
        den = diag.gather(-1, s) - 2 * row_s.gather(-1, a) + diag.gather(-1, a)
        num = ga - gs
        gamma = torch.minimum(num / den.clamp_min(_tiny(den)), wa)
        gamma = torch.where(den > 0, gamma, torch.where(num > 0, wa, torch.zeros_like(wa))).clamp_min(0)
        run = ((f - gs.squeeze(-1)) > tol * torch.maximum(f, floor)).unsqueeze(-1)
        gamma = torch.where(run, gamma, torch.zeros_like(gamma))
        w = w.scatter_add(-1, s, gamma)
        w = w.scatter(-1, a, torch.where(gamma >= wa, torch.zeros_like(wa), w.gather(-1, a) - gamma))
    return w.to(out_dtype)


def nonneg_qp_residual(q: Tensor, c: Tensor, x: Tensor) -> Tensor:
    """The natural KKT residual ``max_k |min(x_k, (Qx + c)_k)|`` of ``min ½xᵀQx + cᵀx, x ≥ 0`` (0 at the optimum)."""
    grad = x @ q.transpose(-1, -2) + c
    return torch.minimum(x, grad).abs().amax(-1)


def nonneg_qp(q: Tensor, c: Tensor, iterations: int | None = None, tol: float = 1e-12) -> Tensor:
    """``x ≥ 0`` minimising ``½ xᵀQx + cᵀx`` for each row of ``c`` (k, m); ``Q`` (m, m) PSD.

    Lawson & Hanson's active-set method ("Solving Least Squares Problems", 1974, Ch. 23, the
    NNLS algorithm, written for a quadratic objective), branch-free and batched over the k
    problems, with ``iterations`` steps (default 2m + 4; the worst cases measured on the UPGrad
    problems of random, near-parallel, near-opposite, rank-2, mixed and scaled families needed
    2, 4, 9 and 19 steps for m = 3, 5, 10, 20):

    - the problem is first scaled by ``D = diag(Q)^{-1/2}`` (x = D y): a positive diagonal
      scaling keeps the constraint, and the scaled quadratic form has a unit diagonal, so the
      pseudo-inverse tolerance below means the same whatever the scale of each task;
    - state: y (start 0) and a flag "y minimises the objective on its passive set P". When the
      flag is set, the coordinate with the most negative gradient, if below
      ``−tol · max|Dc|``, joins P (the flag then is the on-device convergence test: a problem
      with nothing to add stays where it is);
    - every step computes z, the minimiser on P (``Q_PP z_P = −c_P`` by a pseudo-inverse: the
      minimum-norm solution where Q_PP is singular); if z_P > 0 then y = z (flag set), else y
      moves towards z until the first coordinate reaches 0, which leaves P (flag cleared).

    Each step lowers the objective or keeps y; the method stops at the exact optimum after
    finitely many steps (typically the size of the optimal support plus a few drops). Where
    ``c`` lies in the range of Q (e.g. UPGrad, c = Q e_i) the restricted systems are consistent
    even when Q is singular. A coordinate with ``Q_jj = 0`` is left at 0. The KKT residual is
    :func:`nonneg_qp_residual`.
    """
    out_dtype = c.dtype
    dt = working_dtype(c)
    q = _sym(q.to(dt))
    c = c.to(dt)
    m = q.shape[-1]
    steps = 2 * m + 4 if iterations is None else iterations
    diag = torch.diagonal(q).clamp_min(0)
    nonzero = diag > diag.amax() * 1e-30
    d = torch.where(nonzero, diag.clamp_min(_tiny(diag)).rsqrt(), torch.zeros_like(diag))
    k = d.unsqueeze(-1) * q * d.unsqueeze(-2)
    b = c * d
    y = torch.zeros_like(b)
    passive = torch.zeros_like(b, dtype=torch.bool)
    settled = torch.ones(b.shape[:-1], dtype=torch.bool, device=b.device)
    thresh = tol * b.abs().amax(-1)
    eye = torch.eye(m, dtype=dt, device=q.device)
    inf = torch.full((), float("inf"), dtype=dt, device=q.device)
    for _ in range(steps):
        grad = y @ k + b
        pull = torch.where(passive | ~nonzero, inf, grad)
        j = pull.argmin(-1, keepdim=True)
        add = settled & (pull.gather(-1, j).squeeze(-1) < -thresh)
        passive = passive | (torch.zeros_like(passive).scatter(-1, j, True) & add.unsqueeze(-1))
        act = passive.to(dt)
        sys = act.unsqueeze(-1) * k * act.unsqueeze(-2) + eye * (1 - act).unsqueeze(-1)
        z = _refined_pinv_solve(sys, -b * act, 1e-13) * act
        blocked = passive & (z <= 0)
        full = ~blocked.any(-1)
        ratio = torch.where(blocked, y / (y - z).clamp_min(_tiny(y)), inf)
        t = ratio.amin(-1, keepdim=True).clamp(0, 1)
        dropped = blocked & (ratio <= t)
        moved = torch.where(dropped, torch.zeros_like(y), (y + t * (z - y)).clamp_min(0))
        y = torch.where(full.unsqueeze(-1), z, moved)
        passive = torch.where(full.unsqueeze(-1), passive, passive & ~dropped)
        settled = full
    return (y * d).to(out_dtype)


def bargaining_objective(gram: Tensor, alpha: Tensor) -> Tensor:
    """``½ αᵀGα − Σ_i log α_i``: strictly convex on α > 0, stationary exactly where ``Gα = 1/α``."""
    return 0.5 * _quad(gram, alpha) - alpha.log().sum(-1)


def bargaining_residual(gram: Tensor, alpha: Tensor) -> Tensor:
    """``max_i |α_i (Gα)_i − 1|``: 0 exactly at the Nash bargaining solution."""
    ga = (gram @ alpha.unsqueeze(-1)).squeeze(-1)
    return (alpha * ga - 1).abs().amax(-1)


def nash_bargaining(gram: Tensor, init: Tensor, iterations: int = 20, tol: float = 1e-26) -> Tensor:
    """α > 0 solving ``Gα = 1/α`` (Navon et al., ICML 2022, Eq. 5), by damped Newton.

    The system is the stationarity condition of the strictly convex, self-concordant function
    ``F(α) = ½ αᵀGα − Σ_i log α_i`` (:func:`bargaining_objective`), so it has at most one
    solution; it has one whenever no nonnegative combination of the gradients vanishes (e.g.
    linearly independent gradients; also identical ones), and none otherwise (F is then
    unbounded below: a ridge on G restores it, see Nash-MTL's ``eps``). Each step solves the
    Newton system in the scaled form ``(diag(α) G diag(α) + I) u = −r``, ``r = α ∘ Gα − 1``
    (Cholesky of a matrix ≥ I: no pivoting, no failure), and sets ``α ← α ∘ (1 + t u)`` with
    the damped step ``t = 1/(1 + λ)`` while the Newton decrement ``λ = √(rᵀ(…)⁻¹r)`` is ≥ ¼
    and the full step after (Nesterov's damped Newton: F decreases every step, α stays
    positive, convergence is quadratic near the solution). Newton's method is affine
    invariant, so rescaling one task's gradient by s rescales its α_i by exactly 1/s when the
    start is rescaled alike. A problem with λ² ≤ ``tol`` is frozen (tested on the device).
    ``init`` (..., m) must be positive. The residual is :func:`bargaining_residual`.
    """
    out_dtype = gram.dtype
    dt = working_dtype(gram)
    g = _sym(gram.to(dt))
    a = init.to(dt)
    eye = torch.eye(g.shape[-1], dtype=dt, device=g.device)
    for _ in range(iterations):
        r = a * (g @ a.unsqueeze(-1)).squeeze(-1) - 1
        m_scaled = a.unsqueeze(-1) * g * a.unsqueeze(-2) + eye
        chol, _ = torch.linalg.cholesky_ex(m_scaled)
        u = -torch.cholesky_solve(r.unsqueeze(-1), chol).squeeze(-1)
        lam2 = -(r * u).sum(-1, keepdim=True)
        lam = lam2.clamp_min(0).sqrt()
        t = torch.where(lam < 0.25, torch.ones_like(lam), 1 / (1 + lam))
        step = a * (1 + t * u)
        a = torch.where(lam2 > tol, step, a)
    return a.to(out_dtype)
