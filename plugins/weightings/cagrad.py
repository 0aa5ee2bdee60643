"""Conflict-Averse Gradient descent (Liu, Liu, Jin, Stone, Liu, NeurIPS 2021, Eq. 2 / Algorithm 1)."""
import torch

from mtl_platform.contracts import Needs, Weighting
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param

from ._solvers import project_simplex, scale_of, symmetric, tiny

# Candidate step sizes of the solver's line search, relative to the diagonally preconditioned
# gradient (the last candidate, 0, keeps the current point, so every iteration is monotone).
_STEPS = [2.0 ** e for e in range(8, -41, -1)] + [0.0]


def dual_objective(w, gram, radius):
    """F(w) = g_wᵀg₀ + r‖g_w‖ for weights ``w`` (..., m) on the simplex; g₀ is the mean gradient."""
    m = gram.shape[0]
    linear = w @ gram.sum(1) / m
    quad = ((w @ gram) * w).sum(-1).clamp_min(0)
    return linear + radius * quad.sqrt()


def solve_dual(gram, c, iters, steps=None):
    """Minimise F(w) = g_wᵀg₀ + c‖g₀‖‖g_w‖ over the simplex; return (w, ‖g₀‖, ‖g_w‖).

    The problem is scaled by the mean ‖g_i‖² and solved by ``iters`` steps of projected gradient
    descent in the metric diag(G) (so rescaling one task does not slow it down), each with a
    parallel line search over a fixed step grid (``steps``, default ``_STEPS``): every candidate
    is projected onto the simplex in that metric, F is evaluated for all of them at once and the
    best is kept (step 0 is a candidate, so F never increases). The duality gap
    F(w) − min_i g_iᵀd ≥ 0 (zero at the optimum) certifies the answer; ``CAGrad`` records it.
    """
    gram = symmetric(gram)
    m = gram.shape[0]
    scale = scale_of(gram)
    g = gram / scale
    mean_sq = (g.sum() / (m * m)).clamp_min(0)
    radius = c * mean_sq.sqrt()
    linear = g.sum(1) / m                                         # ∂(g_wᵀg₀)/∂w
    diag = torch.diagonal(g).clamp_min(0)
    metric = diag + 1e-12 * diag.max() + tiny(g)
    steps = (torch.tensor(_STEPS) if steps is None else steps).to(g)[:, None]
    w = torch.full((m,), 1.0 / m, dtype=g.dtype, device=g.device)
    for _ in range(iters):
        gw = g @ w
        norm = (w @ gw).clamp_min(0).sqrt()
        grad = linear + radius * gw / norm.clamp_min(tiny(g))
        candidates = project_simplex(w - steps * (grad / metric), metric)
        w = candidates[dual_objective(candidates, g, radius).argmin()]
    norm_w = (w @ g @ w).clamp_min(0).sqrt()
    return w, mean_sq.sqrt() * scale.sqrt(), norm_w * scale.sqrt()


class CAGrad(Weighting):
    """CAGrad (Liu et al. NeurIPS 2021): d = g₀ + c‖g₀‖ g_w/‖g_w‖, w minimising g_wᵀg₀ + c‖g₀‖‖g_w‖ over the
    simplex (g₀ = mean gradient).

    Liu, Liu, Jin, Stone, Liu, "Conflict-Averse Gradient Descent for Multi-task Learning",
    NeurIPS 2021: maximise the worst task improvement min_i g_iᵀd subject to ‖d − g₀‖ ≤ c‖g₀‖
    (Eq. 2); its dual over the simplex is min_w F(w) = g_wᵀg₀ + c‖g₀‖‖g_w‖ with g_w = Σ w_i g_i,
    and the primal solution is d = g₀ + (c‖g₀‖/‖g_w‖) g_w (Algorithm 1). In task weights:
    d = Σ_i (1/m + λ w_i) g_i, λ = c‖g₀‖/‖g_w‖, all from the Gramian. c = 0 gives exactly the
    mean gradient (weights 1/m). The paper requires 0 ≤ c < 1 for its convergence result.

    ``rescale`` follows the official code's option: 0 returns d; 1 returns d/(1 + c²) (the
    code's default); 2 returns d/(1 + c). The scale is the paper's (g₀ is the *mean*, not the
    sum). With all gradients identical (= g) every w is optimal, λ = c and d = (1 + c) g: the
    weights are (1 + c)/m each before rescaling — so exactly g with ``rescale=2``.

    Solver (the paper used scipy's SLSQP; here in torch, on the device): ``iters`` iterations
    of diagonally preconditioned projected gradient descent with a parallel line search over a
    fixed step grid (see ``solve_dual``); it is monotone and needs no host round-trip. Its
    duality gap, relative to the mean ‖g_i‖², is kept in the non-persistent buffer
    ``duality_gap`` for logging (a large value says the solver did not converge). If the optimum
    has g_w ≈ 0 (0 in the convex hull of the gradients) λ is capped by ‖g_w‖ ≥ 1e-8·rms‖g_i‖.
    A gradient method (DESIGN.md §3.2): the heads get the unweighted ∇Σ L_t.

    Partial labels: a task absent from the batch (zero gradient) is replaced by the mean of the
    present tasks' gradients, so g₀ and the ball are those of the present tasks
    (``absent_tasks = "substitute"``, ``contracts.absent``).
    """

    name = "cagrad"
    needs = Needs.GRAMIAN
    scales_heads = False
    absent_tasks = "substitute"
    promises = ("nonnegative",)
    params = (
        Param("c", float, 0.4, "radius of the ball around the mean gradient, relative to its norm", bounds="[0, inf)"),
        Param("rescale", int, 1, "0: d; 1: d/(1+c²) (official default); 2: d/(1+c)", choices=(0, 1, 2)),
        Param("iters", int, 50, "iterations of the simplex-constrained dual solver", bounds="[1, inf)"),
    )

    def setup(self):
        self.register_buffer("duality_gap", torch.zeros(()), persistent=False)
        self.register_buffer("steps", torch.tensor(_STEPS), persistent=False)

    def weights(self, losses, gram=None, **computed):
        if gram is None:
            raise TypeError("cagrad needs the Gramian: call weights(losses, gram=G)")
        gram = symmetric(gram)
        m = gram.shape[0]
        w, norm_0, norm_w = solve_dual(gram, self.c, self.iters, self.steps)
        floor = 1e-8 * scale_of(gram).sqrt()
        lam = self.c * norm_0 / torch.maximum(norm_w, floor)
        weights = 1.0 / m + lam * w
        with torch.no_grad():
            scale = scale_of(gram)
            primal = (gram @ weights).min()                         # min_i g_iᵀd
            dual = dual_objective(w, gram, self.c * norm_0)
            self.duality_gap = ((dual - primal) / scale).to(self.duality_gap)
        if self.rescale == 1:
            return weights / (1.0 + self.c ** 2)
        if self.rescale == 2:
            return weights / (1.0 + self.c)
        return weights


@hookimpl
def mtl_register(registry):
    registry.add_weighting(CAGrad)
