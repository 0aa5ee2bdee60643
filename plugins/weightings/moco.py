"""MoCo: multi-objective gradient correction by tracking (Fernando, Shen, Liu, Chaudhury, Murugesan, Chen, ICLR 2023)."""
import torch

from mtl_platform.contracts import Needs, Weighting
from mtl_platform.gradients.combine import gramian
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param

from ._lazy_state import LazyBuffers
from ._solvers import project_simplex_over

SIMPLEX_MAPS = ("projection", "softmax")


class MoCo(LazyBuffers, Weighting):
    """MoCo (Fernando et al. ICLR 2023): tracked task gradients y_t ← y_t − β(y_t − g_t) and simplex weights
    λ ← Π_Δ(λ − γ(YYᵀ + ρI)λ); the update is Σ λ_t y_t.

    Fernando, Shen, Liu, Chaudhury, Murugesan, Chen, "Mitigating Gradient Bias in
    Multi-objective Learning: A Provably Convergent Approach", ICLR 2023, Algorithm 1 (MoCo),
    one iteration per training step k = 1, 2, …:

    - Eq. 3a: ``y_t ← y_t − β_k (y_t − h_t)`` for every task t, h_t this batch's task gradient
      (a biased stochastic gradient of MGDA's direction is corrected by tracking the true one);
    - Eq. 3b: ``λ ← Π_Δ(λ − γ_k (Y Yᵀ + ρ I) λ)``, Y the (m × P) tracked gradients, Π_Δ the
      Euclidean projection onto the simplex;
    - Eq. 3c: the model moves along ``d = Yᵀ λ`` (the new Y and λ).

    The rates are ``β_k = beta / k^beta_sigma`` and ``γ_k = gamma / k^gamma_sigma`` (LibMTL's
    schedule and defaults: β = 0.5, γ = 0.1, both σ = 0.5, ρ = 0). y starts at 0 and λ at 1/m.

    What the engine allows, and the choices made: d is built from the tracked gradients, not
    from this step's, so it is no combination wᵀJ of the current Jacobian and no Gramian form
    exists (Y mixes gradients taken at earlier parameters): the weighting needs the
    ``JACOBIAN`` and returns the aggregated gradient (P,). Y is the buffer ``y`` (m × P,
    memory as much as the Jacobian, as DB-MTL's EMA), allocated at the first call on the
    Jacobian's device and dtype, checkpointed with λ and the step count; a change of P (another
    gradient space) restarts the tracking. Its coordinates must mean the same parameters from
    step to step, so ``param`` mode is forced (``mode = "param"``; LibMTL likewise refuses
    representation gradients). Y, λ and d are kept in the Jacobian's dtype (the working
    dtype of a JACOBIAN weighting); Y Yᵀ is accumulated in float64 (``gramian``) and the λ step
    is taken in float64, then stored.

    ``normalize`` (default true): h_t = L_t g_t/‖g_t‖, the authors' code as shared in LibMTL
    (every task tracked at the scale of its loss); false: h_t = g_t, the paper's Algorithm 1.
    A zero g_t gives h_t = 0 (LibMTL divides by ‖g_t‖ + 1e-8; dropped, which keeps tiny
    gradients scale-free). ``simplex``: ``projection`` (default) is the paper's Π_Δ; ``softmax``
    is LibMTL's ``softmax(λ − γ_k(YYᵀ + ρI)λ)``, which keeps every λ_t > 0. The paper's
    projection of each y_t onto a ball of radius L_t (its bounded-gradient assumption) is left
    out, as in the authors' code. The λ step is not normalised, so γ must suit the scale of
    Y Yᵀ (with ``normalize``, the squared losses).

    Identical gradients keep λ uniform and give d = (1 − Π(1 − β_k)) h: a positive multiple
    of the common gradient; one task: d = y₁ (λ = 1). A gradient method (DESIGN.md §3.2):
    parameters outside the gradient space get ∇Σ L_t. Partial labels (``absent_tasks =
    "own"``): an absent task has no new sample, so its y_t is left as it was (no step towards
    its zero row); λ's step projects onto the simplex of the present tasks (an absent task gets
    λ = 0 for that step, so its stale y_t takes no part in d; the first step starts from the
    present tasks' uniform weights). The step count k is global (one per training step).
    """

    name = "moco"
    lazy_buffers = ("y",)
    needs = Needs.JACOBIAN
    scales_heads = False
    mode = "param"
    promises = ()
    absent_tasks = "own"
    params = (
        Param("beta", float, 0.5, "tracking rate β of the task gradients y", bounds="(0, 1]"),
        Param("beta_sigma", float, 0.5, "decay σ of the tracking rate, β_k = β / k^σ", bounds="[0, inf)"),
        Param("gamma", float, 0.1, "step size γ of the task weights λ", bounds="(0, inf)"),
        Param("gamma_sigma", float, 0.5, "decay σ of the λ step, γ_k = γ / k^σ", bounds="[0, inf)"),
        Param("rho", float, 0.0, "ℓ2 regularisation ρ of the λ step", bounds="[0, inf)"),
        Param("normalize", bool, True, "track L_t g_t/‖g_t‖ (the authors' code, LibMTL) instead of g_t (the paper)"),
        Param("simplex", str, "projection", "λ's map onto the simplex: the paper's projection or LibMTL's softmax",
              choices=SIMPLEX_MAPS),
    )

    def setup(self):
        m = self.num_tasks
        self.register_buffer("y", torch.zeros(m, 0))
        self.register_buffer("lam", torch.full((m,), 1.0 / m))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def weights(self, losses, jacobian=None, present=None, **computed):
        if jacobian is None:
            raise TypeError("moco needs the Jacobian: call weights(losses, jacobian=J)")
        jac = jacobian
        alive = torch.ones(jac.shape[0], dtype=torch.bool, device=jac.device) if present is None else present
        if self.y.shape != jac.shape:  # first call, or a different gradient space
            self.y = torch.zeros_like(jac)
            self.steps = torch.zeros_like(self.steps)
        self.steps = self.steps + 1
        k = self.steps.to(torch.float64)
        beta = self.beta / k.pow(self.beta_sigma)
        gamma = self.gamma / k.pow(self.gamma_sigma)
        h = jac
        if self.normalize:
            norms = torch.linalg.vector_norm(jac, dim=1, dtype=torch.float64)
            nonzero = norms > 0
            factor = torch.where(nonzero, losses.detach().to(norms) / torch.where(nonzero, norms, torch.ones_like(norms)),
                                 torch.zeros_like(norms))
            h = jac * factor.to(jac.dtype).unsqueeze(1)
        y = self.y.to(jac)
        y = torch.where(alive.unsqueeze(1), y - beta.to(jac.dtype) * (y - h), y)
        g = gramian(y)                                                 # Y Yᵀ, float64
        uniform = alive.to(g.dtype) / alive.sum().clamp_min(1)
        # the first step starts from the present tasks' 1/m in float64 (the buffer's 1/m is rounded)
        lam = torch.where(self.steps > 1, self.lam.to(g), uniform)
        moved = lam - gamma * (g @ lam + self.rho * lam)
        if self.simplex == "softmax":
            lam = torch.softmax(torch.where(alive, moved, torch.full_like(moved, float("-inf"))), 0)
            lam = torch.where(alive, lam, torch.zeros_like(lam))       # no task present: 0, not NaN
        else:
            lam = project_simplex_over(moved, alive)
        self.y = y
        self.lam = lam.to(jac.dtype)
        return lam.to(jac.dtype) @ y


@hookimpl
def mtl_register(registry):
    registry.add_weighting(MoCo)
