"""The maths shared by the built-in weightings: small torch routines on task Gramians. Private
to ``mtl_platform_plugins.weightings`` (the core never imports it).

Every function is pure (tensors in, tensors out), runs on the device of its inputs, has a
fixed iteration budget and reads no tensor value on the host per step (no ``.item()``, no
Python branch on a tensor); convergence tests are per-problem masks evaluated on the device
(a converged problem is frozen). On the CPU the active-set solvers (:func:`nonneg_qp`,
:func:`min_norm_simplex`) also read one "all converged" flag every few steps and stop early
(:func:`host_checks`; on an accelerator they read nothing and run the whole budget). They are sized for the
task dimension m (a handful to a few dozen tasks), not for the parameter dimension. The
solvers compute in :func:`mtl_platform.contracts.weighting.working_dtype` (float64 where
available).

Gramian helpers and coefficient rows (GH, GH++, PCGrad, equilibrium, CAGrad): a vector
``v = c @ J`` in the span of the task gradients is stored as its coefficients ``c`` (m,), so
``u·v = c_u G c_vᵀ`` needs only the Gramian ``G = J Jᵀ``.

- :func:`symmetric`, :func:`working_gram`, :func:`tiny`, :func:`scale_of`: ``(G + Gᵀ)/2`` (in the
  working dtype), the 0/0 guard, ``trace(G)/m``.
- :func:`other_tasks`, :func:`sequential_projection`: PCGrad-style projections, one target
  after another, on coefficient rows.
- :func:`project_simplex`: projection onto the probability simplex, Euclidean or in a
  diagonal metric; :func:`project_simplex_over`, onto the simplex of some coordinates (MoDo's
  and SDMGrad's present tasks).
- :func:`min_norm_two`: the closed-form minimiser of ``‖γ a + (1 − γ) b‖`` (Sener & Koltun).
- :func:`min_norm_simplex`: the minimum-norm point of the convex hull of the task gradients
  from their Gramian, exactly (Wolfe's active-set method); :func:`min_norm_frank_wolfe`, the
  same by Sener & Koltun's Frank–Wolfe (cheaper steps, approximate); :func:`simplex_kkt_gap`
  certifies an answer.
- :func:`nonneg_qp`: ``min ½xᵀQx + cᵀx`` over ``x ≥ 0`` for a batch of linear terms, exactly
  (a block-principal-pivoting guess, then Lawson–Hanson's active set), used by UPGrad;
  :func:`nonneg_qp_residual` certifies it; :func:`psd_gram` removes a Gramian's negative
  eigenvalues (rounding) first.
- :func:`nash_bargaining`: α > 0 with ``Gα = 1/α`` (Nash-MTL), by damped Newton on a
  strictly convex function; :func:`bargaining_residual` certifies it.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from mtl_platform.contracts.weighting import working_dtype

__all__ = ["symmetric", "working_gram", "tiny", "scale_of", "other_tasks", "sequential_projection", "project_simplex",
           "project_simplex_over", "min_norm_two", "min_norm_simplex", "min_norm_frank_wolfe", "simplex_kkt_gap",
           "nonneg_qp", "nonneg_qp_residual", "psd_gram", "nash_bargaining", "bargaining_objective", "bargaining_residual"]


def symmetric(gram: Tensor) -> Tensor:
    """``(G + Gᵀ)/2``: an engine that accumulates G block by block may leave it slightly asymmetric."""
    return 0.5 * (gram + gram.transpose(-1, -2))


def tiny(like: Tensor) -> float:
    """The smallest positive normal number of ``like``'s dtype (a 0/0 guard, not a tolerance)."""
    return torch.finfo(like.dtype).tiny


def working_gram(gram: Tensor) -> Tensor:
    """``gram`` in the working dtype (:func:`~mtl_platform.contracts.weighting.working_dtype`), symmetrised."""
    return symmetric(gram.to(working_dtype(gram)))


def cosine_eigen(g: Tensor, rel: float):
    """The cosine matrix K = G/(‖g‖‖g‖ᵀ) of a working Gramian and its ``eigh``: returns
    (alive, norms, lam, vec, kept) — tasks with a nonzero gradient, ‖g_t‖ (1 for a zero one),
    K's eigenvalues and vectors, and which eigenvalues exceed ``rel · λ_max`` (the kept span;
    deciding rank on directions alone, whatever the norms: Aligned-MTL, ConFIG)."""
    diag = torch.diagonal(g).clamp_min(0)
    alive = diag > diag.amax() * 1e-30
    norms = torch.where(alive, diag, torch.ones_like(diag)).sqrt()
    both = alive[:, None] & alive[None, :]
    cosines = torch.where(both, g / (norms[:, None] * norms[None, :]), torch.zeros_like(g))
    lam, vec = torch.linalg.eigh(cosines)
    return alive, norms, lam, vec, lam > rel * lam.amax().clamp_min(0)


def scale_of(gram: Tensor) -> Tensor:
    """The mean squared task-gradient norm, ``trace(G)/m``, floored away from zero (a 0-d tensor)."""
    return torch.diagonal(gram).mean().clamp_min(tiny(gram))


def other_tasks(m: int, shuffle: bool, device) -> Tensor:
    """(m, m−1) long tensor: row i lists every task j ≠ i, in index order or in a random order.

    The random order is drawn independently for every row from torch's global generator
    (``torch.rand`` on ``device``), so checkpoints that save the RNG state reproduce it.
    """
    if m < 2:
        return torch.zeros(m, 0, dtype=torch.long, device=device)
    if shuffle:
        keys = torch.rand(m, m, device=device)
    else:
        keys = torch.arange(m, device=device, dtype=torch.float32).expand(m, m).clone()
    keys.fill_diagonal_(float("inf"))  # a task never comes before the others against itself
    return keys.argsort(dim=1)[:, : m - 1]


def sequential_projection(start: Tensor, targets: Tensor, gram: Tensor, order: Tensor,
                          fires: Callable[[Tensor, Tensor, Tensor], Tensor], min_sq: Tensor | float) -> Tensor:
    """Project every row of ``start``, one target after another, onto the normal plane of the target.

    ``start`` (m, m): coefficient rows of the vectors v_i to adjust; ``targets`` (n, m): coefficient
    rows of the reference vectors t_j (never modified); ``order`` (m, steps): row i lists which
    targets v_i meets, in order. At each step, with the *current* v_i and the target t_j,
    ``fires(v_i·t_j, ‖v_i‖², ‖t_j‖²)`` decides (a bool per row) whether
    ``v_i ← v_i − (v_i·t_j / ‖t_j‖²) t_j``. Targets with ``‖t_j‖² ≤ min_sq`` are skipped.
    All rows advance together: m−1 vectorised steps of O(m²) work each.
    """
    coeffs = start.clone()
    targets_gram = targets @ gram                                  # row j: t_j G
    target_sq = (targets_gram * targets).sum(1)                    # ‖t_j‖²
    for step in range(order.shape[1]):
        j = order[:, step]
        dot = (coeffs * targets_gram[j]).sum(1)                    # v_i · t_j
        own_sq = ((coeffs @ gram) * coeffs).sum(1).clamp_min(0)   # ‖v_i‖²
        sq_j = target_sq[j]
        valid = sq_j > min_sq
        project = fires(dot, own_sq, sq_j) & valid
        ratio = torch.where(project, dot / torch.where(valid, sq_j, torch.ones_like(sq_j)),
                            torch.zeros_like(dot))
        coeffs = coeffs - ratio[:, None] * targets[j]
    return coeffs


def project_simplex(points: Tensor, metric: Tensor | None = None) -> Tensor:
    """Projection of each row of ``points`` (..., m) onto the probability simplex ``{x ≥ 0, Σ x = 1}``.

    The sort-based algorithm (Held, Wolfe & Crowder 1974; Duchi et al., ICML 2008), in the
    weighted norm ``Σ_i d_i (x_i − y_i)²`` for a ``metric`` d (m,) > 0 (CAGrad's
    preconditioned steps), Euclidean for ``metric=None``: ``x_i = max(0, y_i − ν/d_i)`` with ν
    such that ``Σ x = 1``. With the breakpoints ``y_i d_i`` sorted in decreasing order, ν is
    ``(Σ_{k≤j} y_k − 1) / Σ_{k≤j} 1/d_k`` at the largest j whose breakpoint exceeds it (the
    breakpoints above ν form a prefix); for d = 1, ``θ = (Σ_{k≤ρ} u_k − 1)/ρ`` with u sorted.
    Branch-free and batched.
    """
    if metric is None:
        metric = torch.ones(points.shape[-1], dtype=points.dtype, device=points.device)
    inv = (1.0 / metric).expand_as(points)
    keys = points * metric
    order = keys.argsort(dim=-1, descending=True)
    sorted_keys = keys.gather(-1, order)
    cum_y = points.gather(-1, order).cumsum(-1)
    cum_inv = inv.gather(-1, order).cumsum(-1)
    nu = (cum_y - 1.0) / cum_inv                                   # ν if the top-k are the support
    support = sorted_keys > nu                                     # true for k = 1..K*, then false
    count = support.sum(-1, keepdim=True).clamp_min(1)
    nu_star = nu.gather(-1, count - 1)
    return (points - nu_star * inv).clamp_min(0)


def project_simplex_over(points: Tensor, support: Tensor | None) -> Tensor:
    """:func:`project_simplex` of ``points`` (m,) onto the simplex of the coordinates in ``support``
    (m,) bool (None: all); the others come out 0.

    Every coordinate off the support is first set to ``max_support − 2``: the projection's
    threshold ν is ≥ ``max − 1`` (Σ (y − ν)₊ = 1), so they fall below it and get 0, and the
    support's coordinates are projected as if alone.
    """
    if support is None:
        return project_simplex(points)
    low = torch.where(support, points, torch.full_like(points, float("-inf"))).amax() - 2
    inside = torch.where(support, points, torch.where(support.any(), low, torch.zeros_like(low)))
    return torch.where(support, project_simplex(inside), torch.zeros_like(points))


def min_norm_two(aa: Tensor, ab: Tensor, bb: Tensor) -> Tensor:
    """γ ∈ [0, 1] minimising ``‖γ a + (1 − γ) b‖²`` given ``aᵀa``, ``aᵀb``, ``bᵀb``.

    Sener & Koltun (NeurIPS 2018), Algorithm 1: ``γ = (bᵀb − aᵀb) / ‖a − b‖²`` clipped to
    [0, 1]; ``a = b`` (zero denominator) gives γ = ½ by convention here (every γ is optimal).
    """
    den = aa - 2 * ab + bb
    raw = (bb - ab) / den.clamp_min(tiny(den))
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
    floor = diag.amax(-1, keepdim=True) * 1e-30 + tiny(gram)
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


def host_checks(like: Tensor, check_every: int | str | None) -> int | None:
    """The solvers' early-stopping reads: ``"auto"`` checks every 4 steps where the tensors live
    on the host (a read costs nothing there) and never on an accelerator, where every read would
    synchronise the device (the whole fixed budget is run instead, as on every device before)."""
    if check_every == "auto":
        return 4 if like.device.type == "cpu" else None
    return check_every


def _wolfe_steps(gram: Tensor, w: Tensor, steps: int, tol: float, check_every: int | str | None = "auto") -> Tensor:
    """Wolfe's minimum-norm-point algorithm (Math. Programming 11, 1976), branch-free, batched.

    State: weights w and a flag "w is the affine minimiser on its support (corral)". A major
    step (flag set and Frank–Wolfe gap > tol) adds the best vertex s = argmin (Gw)_s to the
    support; every step then computes the affine minimiser v on the support; if v ≥ 0 it is
    taken (flag set), else w moves towards v up to the first weight that reaches 0, which is
    dropped (flag cleared). Each step lowers wᵀGw or keeps w; it ends at the exact optimum
    after finitely many steps (in practice up to about twice the support size). A candidate
    that would raise wᵀGw (rounding in a degenerate system) is refused, and the next step
    may add a vertex again. The host reads one flag, "every problem is a corral with nothing to
    add", after the first step and every ``check_every`` steps after it, and the loop stops
    early if so (``check_every=None``: never, the whole budget is run).
    """
    check_every = host_checks(gram, check_every)
    dt = gram.dtype
    diag = torch.diagonal(gram, dim1=-2, dim2=-1)
    floor = 1e-30 * diag.amax(-1)
    inf = torch.full((), float("inf"), dtype=dt, device=gram.device)
    corral = torch.zeros(w.shape[:-1], dtype=torch.bool, device=w.device)
    for step in range(steps):
        gw = (gram @ w.unsqueeze(-1)).squeeze(-1)
        f = (w * gw).sum(-1)
        s = gw.argmin(-1, keepdim=True)
        gap = f - gw.gather(-1, s).squeeze(-1)
        add = corral & (gap > tol * torch.maximum(f, floor))
        if check_every and step % check_every == 1 % check_every and not bool((add | ~corral).any()):
            break                                                  # the one host read, every few steps
        onehot = torch.zeros_like(w, dtype=torch.bool).scatter(-1, s, True)
        support = (w > 0) | (onehot & add.unsqueeze(-1))
        v = _affine_min_norm(gram, support, rtol=1e-13)
        blocked = support & (v <= 0)
        full = ~blocked.any(-1)
        ratio = torch.where(blocked, w / (w - v).clamp_min(tiny(w)), inf)
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


def min_norm_simplex(gram: Tensor, iterations: int | None = None, tol: float = 1e-12,
                     check_every: int | str | None = "auto") -> Tensor:
    """Weights ``w`` on the simplex minimising ``wᵀGw``: ``d = Σ w_t g_t`` is the min-norm point of conv{g_t}.

    ``gram`` (..., m, m) is the Gramian ``G = J Jᵀ`` (a batch of problems is solved at once).
    Wolfe's exact active-set method (``_wolfe_steps``) from the barycentre ``w = 1/m`` (so
    identical gradients keep equal weights), at most ``iterations`` steps, fewer when every
    problem has converged (checked on the host after the first step and every
    ``check_every`` steps; ``None``: never) (default 2m + 6; the worst
    cases measured on random, near-parallel, near-opposite, rank-2, mixed and 1e-3..1e3-scaled
    families needed 2, 5, 12 and 35 steps for m = 3, 5, 10, 20). Convergence test on the
    device: a problem whose Frank–Wolfe gap ``wᵀGw − min_i (Gw)_i`` is ≤ ``tol ·``
    max(wᵀGw, 1e-30 · max_i G_ii) adds no vertex and stays where it is. The KKT conditions of
    the answer (``(Gw)_i ≥ wᵀGw`` for all i, equality on the support) can be checked with
    :func:`simplex_kkt_gap`. m = 1 gives w = 1; m = 2 uses the closed form
    (:func:`min_norm_two`, ½ each for identical gradients) and ignores ``iterations``.
    """
    out_dtype = gram.dtype
    g = working_gram(gram)
    m = g.shape[-1]
    w = torch.full((*g.shape[:-2], m), 1.0 / m, dtype=g.dtype, device=g.device)
    if m == 1:
        return w.to(out_dtype)
    if m == 2:
        gamma = min_norm_two(g[..., 0, 0], g[..., 0, 1], g[..., 1, 1])
        return torch.stack([gamma, 1 - gamma], -1).to(out_dtype)
    w = _wolfe_steps(g, w, 2 * m + 6 if iterations is None else iterations, tol, check_every)
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
    g = working_gram(gram)
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
        gamma = torch.minimum(num / den.clamp_min(tiny(den)), wa)
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


def psd_gram(gram: Tensor) -> Tensor:
    """``gram`` (m, m) without its negative eigenvalues, taken in the cosine scale (rounding, e.g. of float32 Gramians).

    With ``D = diag(G)^{-1/2}`` (0 for a zero row), the cosine matrix ``K = DGD`` has a unit
    diagonal, so its eigenvalues mean the same whatever the scale of each task; only K's
    negative part is subtracted (``K − U min(Λ, 0) Uᵀ``, so a PSD ``G`` comes back unchanged up
    to rounding) and the result is scaled back, ``D⁻¹ K⁺ D⁻¹``. One eigendecomposition.
    """
    diag = torch.diagonal(gram).clamp_min(0)
    nonzero = diag > diag.amax() * 1e-30
    d = torch.where(nonzero, diag.clamp_min(tiny(diag)).rsqrt(), torch.zeros_like(diag))
    k = d.unsqueeze(-1) * gram * d.unsqueeze(-2)
    evals, evecs = torch.linalg.eigh(k)
    k = symmetric(k - (evecs * evals.clamp_max(0)) @ evecs.transpose(-1, -2))
    back = torch.where(nonzero, diag.sqrt(), torch.zeros_like(diag))
    return back.unsqueeze(-1) * k * back.unsqueeze(-2)


def _restricted_solve(k: Tensor, b: Tensor, passive: Tensor, eye: Tensor) -> Tensor:
    """z (..., m) minimising ``½ zᵀKz + bᵀz`` with z = 0 off ``passive``, for a PSD ``k`` with a unit diagonal.

    ``(K_PP + δI) z_P = −b_P`` (δ = 1e-13) by a batched Cholesky factorisation, which cannot
    fail (the matrix is positive definite), plus one step of iterative refinement with K_PP;
    for a singular K_PP and a consistent system this is the minimum-norm solution up to a
    relative O(δ/λ) in the directions of eigenvalue λ, where the gradient is exact to O(δ).
    """
    both = passive.unsqueeze(-1) & passive.unsqueeze(-2)
    chol, _ = torch.linalg.cholesky_ex(torch.where(both, k + 1e-13 * eye, eye))
    rhs = torch.where(passive, -b, torch.zeros_like(b))

    def solve(r):
        half = torch.linalg.solve_triangular(chol, r.unsqueeze(-1), upper=False)
        return torch.linalg.solve_triangular(chol.transpose(-1, -2), half, upper=True).squeeze(-1)

    z = solve(rhs)
    return z + solve(torch.where(passive, rhs - z @ k, torch.zeros_like(z)))  # z is 0 off P: z K_PP = (zK)_P


def nonneg_qp(q: Tensor, c: Tensor, iterations: int | None = None, tol: float = 1e-12,
              guesses: int = 8, check_every: int | str | None = "auto") -> Tensor:
    """``x ≥ 0`` minimising ``½ xᵀQx + cᵀx`` for each row of ``c`` (k, m); ``Q`` (m, m) PSD.

    Exact, batched over the k problems, in two phases, every linear solve by
    :func:`_restricted_solve` (a batched Cholesky factorisation, no eigendecomposition):

    - the problem is first scaled by ``D = diag(Q)^{-1/2}`` (x = D y): a positive diagonal
      scaling keeps the constraint, and the scaled quadratic form K has a unit diagonal, so the
      ridge of the solves means the same whatever the scale of each task;
    - a guess of the optimal support P: up to ``guesses`` full exchanges of block principal
      pivoting (Kim & Park, "Fast nonnegative matrix factorization: an active-set-like method
      and comparisons", SIAM J. Sci. Comput. 33, 2011, Alg. 2 without its backup rule), from
      P = ∅: z minimises on P; every j ∈ P with z_j ≤ 0 leaves P and every j ∉ P with a
      gradient below ``−tol · max|Dc|`` joins it. On the Gramian of ``bench/solver_calls.py``
      (random gradients, a near-opposite pair) the whole call takes 2 to 4 solves at m = 8
      and 40 (seeds 0–4); on the hard families at m = 40 a few exchanges leave Lawson–Hanson a few steps
      where from P = ∅ it needs one per coordinate of the support;
    - then Lawson & Hanson's active-set method ("Solving Least Squares Problems", 1974,
      Ch. 23, the NNLS algorithm, written for a quadratic objective), which makes the answer
      exact whatever the guess, with at most ``iterations`` steps (default 2m + 4; from P = ∅
      the worst cases measured on random, near-parallel, near-opposite, rank-2, mixed and
      scaled families needed 2, 4, 9 and 19 steps for m = 3, 5, 10, 20). It starts from
      y = z where the guess has z_P > 0, else from y = 0 with that P (its first step drops
      every z_j ≤ 0). State: y and a flag "y minimises the objective on P". When the flag is
      set, the coordinate with the most negative gradient, if below the threshold, joins P;
      every step computes z, the minimiser on P; if z_P > 0 then y = z (flag set), else y
      moves towards z until the first coordinate reaches 0, which leaves P (flag cleared).
      Each step lowers the objective or keeps y.

    The host reads one flag, "every problem has converged" (nothing wrong in the guess; flag
    set and nothing to add), before the first exchange (so non-conflicting problems cost no
    solve) and every second exchange after it, before the first Lawson–Hanson step and every
    ``check_every`` steps after it, and the loop stops early if so: a handful of host
    synchronisations per call, none per step (``check_every=None``:
    none at all, every step of the budget is run). Where ``c`` lies in the
    range of Q (UPGrad, c = Q e_i) the restricted systems are consistent even when Q is
    singular. A coordinate with ``Q_jj = 0`` is left at 0. The KKT residual is
    :func:`nonneg_qp_residual`.
    """
    check_every = host_checks(c, check_every)
    out_dtype = c.dtype
    dt = working_dtype(c)
    q = symmetric(q.to(dt))
    c = c.to(dt)
    m = q.shape[-1]
    steps = 2 * m + 4 if iterations is None else iterations
    diag = torch.diagonal(q).clamp_min(0)
    nonzero = diag > diag.amax() * 1e-30
    d = torch.where(nonzero, diag.clamp_min(tiny(diag)).rsqrt(), torch.zeros_like(diag))
    k = d.unsqueeze(-1) * q * d.unsqueeze(-2)
    b = c * d
    thresh = tol * b.abs().amax(-1, keepdim=True)
    eye = torch.eye(m, dtype=dt, device=q.device)
    inf = torch.full((), float("inf"), dtype=dt, device=q.device)
    # phase 1, a guess of the optimal support: block principal pivoting (Kim & Park, SIAM J. Sci.
    # Comput. 33, 2011) with full exchanges, from the empty set: every coordinate of the passive
    # set with z_j ≤ 0 leaves it and every other with a negative gradient joins it
    passive = torch.zeros_like(b, dtype=torch.bool)
    z = torch.zeros_like(b)
    for guess in range(guesses):
        wrong = (passive & (z <= 0)) | (~passive & nonzero & (z @ k + b < -thresh))
        if check_every and guess % 2 == 0 and not bool(wrong.any()):  # one host read every 2 exchanges
            if guess == 0:
                return torch.zeros_like(c).to(out_dtype)          # x = 0 is optimal: no solve at all
            break
        passive = passive ^ wrong
        z = _restricted_solve(k, b, passive, eye)
    # phase 2, Lawson–Hanson from the guess where z_P > 0 (then y = z minimises on P), else from
    # y = 0 with that passive set (the first step drops every z_j ≤ 0): exact whatever the guess
    settled = ~(passive & (z <= 0)).any(-1)
    y = torch.where(settled.unsqueeze(-1), z, torch.zeros_like(z))
    for step in range(steps):
        grad = y @ k + b
        pull = torch.where(passive | ~nonzero, inf, grad)
        j = pull.argmin(-1, keepdim=True)
        add = settled & (pull.gather(-1, j).squeeze(-1) < -thresh.squeeze(-1))
        if check_every and step % check_every == 0 and not bool((add | ~settled).any()):
            break                                                  # the one host read, every few steps
        passive = passive | (torch.zeros_like(passive).scatter(-1, j, True) & add.unsqueeze(-1))
        z = _restricted_solve(k, b, passive, eye)
        blocked = passive & (z <= 0)
        full = ~blocked.any(-1)
        ratio = torch.where(blocked, y / (y - z).clamp_min(tiny(y)), inf)
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
    g = symmetric(gram.to(dt))
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
