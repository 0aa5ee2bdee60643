"""Small torch solvers on task Gramians, for the solver-based weightings (MGDA, UPGrad, …).

Every function is pure (tensors in, tensors out), runs on the device of its inputs, never
reads a tensor value on the host (no ``.item()``, no Python branch on a tensor) and has a
fixed iteration budget; convergence tests are per-problem masks evaluated on the device
(a converged problem is frozen, the loop still runs its budget). They are sized for the
task dimension m (a handful to a few dozen tasks), not for the parameter dimension.

- :func:`working_dtype`: the precision the solvers compute in (float64 where available).
- :func:`project_simplex`: Euclidean projection onto the probability simplex.
- :func:`min_norm_two`: the closed-form minimiser of ``‖γ a + (1 − γ) b‖`` (Sener & Koltun).
- :func:`min_norm_simplex`: the minimum-norm point of the convex hull of the task gradients
  from their Gramian (pairwise Frank–Wolfe with exact line search, then an active-set solve).
- :func:`nonneg_qp`: ``min ½xᵀQx + cᵀx`` over ``x ≥ 0`` for a batch of linear terms
  (projected coordinate descent, then an active-set solve), used by UPGrad.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["working_dtype", "project_simplex", "min_norm_two", "min_norm_simplex", "nonneg_qp",
           "simplex_kkt_gap", "nonneg_qp_residual"]


def working_dtype(like: Tensor) -> torch.dtype:
    """float64, except on devices without it (MPS), where float32.

    The Gramians the solvers receive are tiny (m × m), so double precision costs nothing
    measurable and keeps ill-conditioned systems (near-parallel gradients) solvable.
    """
    if like.device.type == "mps":
        return torch.float32
    return torch.float64


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
    sol = (torch.linalg.pinv(a, rtol=rtol, hermitian=True) @ rhs.unsqueeze(-1)).squeeze(-1)
    v = sol[..., :m] / norms * active
    return v / v.sum(-1, keepdim=True)  # exact 1 up to rounding (the border row enforces it)


def _quad(gram: Tensor, w: Tensor) -> Tensor:
    return (w * (gram @ w.unsqueeze(-1)).squeeze(-1)).sum(-1)


def _wolfe_steps(gram: Tensor, w: Tensor, steps: int, tol: float) -> Tensor:
    """Wolfe's minimum-norm-point algorithm (Math. Programming 11, 1976), branch-free, batched.

    State: weights w and a flag "w is the affine minimiser on its support (corral)". A major
    step (flag set and Frank–Wolfe gap > tol) adds the best vertex s = argmin (Gw)_s to the
    support; every step then computes the affine minimiser v on the support; if v ≥ 0 it is
    taken (flag set), else w moves towards v up to the first weight that reaches 0, which is
    dropped (flag cleared). Each step lowers wᵀGw or keeps w; it ends at the exact optimum
    after finitely many steps (in practice a few times the support size).
    """
    m = gram.shape[-1]
    dt = gram.dtype
    diag = torch.diagonal(gram, dim1=-2, dim2=-1)
    floor = 1e-30 * diag.amax(-1)
    inf = torch.tensor(float("inf"), dtype=dt, device=gram.device)
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


def min_norm_simplex(gram: Tensor, iterations: int = 250, tol: float = 1e-12,
                     active_set_steps: int | None = None) -> Tensor:
    """Weights ``w`` on the simplex minimising ``wᵀGw``: ``d = Σ w_t g_t`` is the min-norm point of conv{g_t}.

    ``gram`` (..., m, m) is the Gramian ``G = J Jᵀ`` (a batch of problems is solved at once).
    Two phases, both with fixed budgets and on-device convergence masks:

    1. ``iterations`` steps of Frank–Wolfe with the exact line search of Sener & Koltun
       (NeurIPS 2018, Alg. 2) in its *pairwise* form (Lacoste-Julien & Jaggi, NeurIPS 2015):
       from the barycentre ``w = 1/m`` (so identical gradients keep equal weights), move weight
       from the worst active vertex ``a = argmax_{w_i > 0} (Gw)_i`` to the best vertex
       ``s = argmin_i (Gw)_i`` with the exact two-point line search (:func:`min_norm_two`),
       capped at ``w_a`` (a "drop" step sets ``w_a`` to exactly 0). A problem whose
       Frank–Wolfe gap ``wᵀGw − min_i (Gw)_i`` is ≤ ``tol ·`` max(wᵀGw, 1e-30 · max_i G_ii)
       is frozen.
    2. ``active_set_steps`` (default 3m) steps of Wolfe's exact active-set method
       (``_wolfe_steps``) started from that point: it finishes the job where Frank–Wolfe is
       slow (near-opposite gradients, a min-norm point near 0) and makes the support exact.

    The KKT conditions of the answer (``(Gw)_i ≥ wᵀGw`` for all i, equality on the support)
    can be checked with :func:`simplex_kkt_gap`. With m = 1 the answer is ``w = 1``.
    """
    out_dtype = gram.dtype
    g = _sym(gram.to(working_dtype(gram)))
    m = g.shape[-1]
    batch = g.shape[:-2]
    w = torch.full((*batch, m), 1.0 / m, dtype=g.dtype, device=g.device)
    if m == 1:
        return w.to(out_dtype)
    diag = torch.diagonal(g, dim1=-2, dim2=-1)
    floor = 1e-30 * diag.amax(-1)
    neg_inf = torch.tensor(float("-inf"), dtype=g.dtype, device=g.device)
    for _ in range(iterations):
        gw = (g @ w.unsqueeze(-1)).squeeze(-1)
        f = (w * gw).sum(-1)
        s = gw.argmin(-1, keepdim=True)
        a = torch.where(w > 0, gw, neg_inf).argmax(-1, keepdim=True)
        gs, ga = gw.gather(-1, s), gw.gather(-1, a)
        g_ss, g_aa = diag.gather(-1, s), diag.gather(-1, a)
        row_s = g.gather(-2, s.unsqueeze(-1).expand(*batch, 1, m)).squeeze(-2)
        g_sa = row_s.gather(-1, a)
        wa = w.gather(-1, a)
        den = g_ss - 2 * g_sa + g_aa
        num = ga - gs
        gamma = torch.minimum(num / den.clamp_min(_tiny(den)), wa)
        gamma = torch.where(den > 0, gamma, torch.where(num > 0, wa, torch.zeros_like(wa))).clamp_min(0)
        run = ((f - gs.squeeze(-1)) > tol * torch.maximum(f, floor)).unsqueeze(-1)
        gamma = torch.where(run, gamma, torch.zeros_like(gamma))
        w = w.scatter_add(-1, s, gamma)
        w = w.scatter(-1, a, torch.where(gamma >= wa, torch.zeros_like(wa), w.gather(-1, a) - gamma))
    w = _wolfe_steps(g, w, 3 * m if active_set_steps is None else active_set_steps, tol)
    return w.to(out_dtype)


def nonneg_qp_residual(q: Tensor, c: Tensor, x: Tensor) -> Tensor:
    """The natural KKT residual ``max_k |min(x_k, (Qx + c)_k)|`` of ``min ½xᵀQx + cᵀx, x ≥ 0`` (0 at the optimum)."""
    grad = x @ q.transpose(-1, -2) + c
    return torch.minimum(x, grad).abs().amax(-1)


def nonneg_qp(q: Tensor, c: Tensor, iterations: int = 100, tol: float = 1e-13, polish: int = 3) -> Tensor:
    """``x ≥ 0`` minimising ``½ xᵀQx + cᵀx`` for each row of ``c`` (k, m); ``Q`` (m, m) PSD.

    Method: the problem is first scaled by ``D = diag(Q)^{-1/2}`` (x = D y; a positive
    diagonal scaling keeps the constraint x ≥ 0, and makes the quadratic form unit-diagonal,
    so the iteration is blind to the scale of each task); then

    1. ``iterations`` sweeps of cyclic projected coordinate descent — each coordinate is set
       to its exact constrained minimiser ``y_j ← max(0, y_j − (DQDy + Dc)_j)``, all k problems
       at once; a problem whose residual (:func:`nonneg_qp_residual` in the scaled variables)
       is ≤ ``tol ·`` (1 + max|Dc|) is frozen;
    2. ``polish`` rounds of an active-set step: with A = {y_j > 0}, solve Q_AA y_A = −c_A by a
       pseudo-inverse (least squares where Q_AA is singular), clip to y ≥ 0, and keep the
       candidate only where it lowers the residual.

    A coordinate with ``Q_jj = 0`` (a zero gradient) has a zero column in the scaled problem
    and stays at 0.
    """
    out_dtype = c.dtype
    dt = working_dtype(c)
    q = _sym(q.to(dt))
    c = c.to(dt)
    m = q.shape[-1]
    diag = torch.diagonal(q).clamp_min(0)
    nonzero = diag > diag.amax() * 1e-30
    d = torch.where(nonzero, diag.clamp_min(_tiny(diag)).rsqrt(), torch.zeros_like(diag))
    k = d.unsqueeze(-1) * q * d.unsqueeze(-2)
    k.diagonal().copy_(nonzero.to(dt))
    b = c * d
    y = torch.zeros_like(b)
    thresh = tol * (1 + b.abs().amax(-1, keepdim=True))
    kt = k.transpose(0, 1).contiguous()
    for _ in range(iterations):
        run = nonneg_qp_residual(k, b, y).unsqueeze(-1) > thresh
        new = y.clone()
        for j in range(m):
            new[:, j] = (new[:, j] - (new @ kt[:, j] + b[:, j])).clamp_min(0)
        y = torch.where(run, new, y)
    eye = torch.eye(m, dtype=dt, device=q.device)
    for _ in range(polish):
        active = (y > 0).to(dt)
        sys = active.unsqueeze(-1) * k * active.unsqueeze(-2) + eye * (1 - active).unsqueeze(-1)
        sol = (torch.linalg.pinv(sys, rtol=1e-13, hermitian=True) @ (-b * active).unsqueeze(-1)).squeeze(-1)
        cand = sol.clamp_min(0) * active
        better = nonneg_qp_residual(k, b, cand) < nonneg_qp_residual(k, b, y)
        y = torch.where(better.unsqueeze(-1), cand, y)
    return (y * d).to(out_dtype)
