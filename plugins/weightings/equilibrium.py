"""Domain Gradient Equilibrium (Zhang, Li, Shin, ACM MM 2024, Eqs. 2–9), summed form."""
import torch
from torch import Tensor

from mtl_platform.contracts import Needs, Weighting
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param

from ._solvers import other_tasks, scale_of, sequential_projection, symmetric, tiny


def adjusted_specifics(gram, alpha, order, eps=1e-8):
    """(S, Ŝ): coefficient rows of the specific parts s_k = g_k − ḡ (Eq. 4) and of their adjusted ŝ_k (Eq. 5).

    ŝ_i starts at s_i and meets every s_j (j ≠ i, in row i's ``order``); whenever the signed
    cos(ŝ_i, s_j) > α it is projected onto the normal plane of the *original* s_j (cumulative,
    spec gradients.md §2.3 / §2.6 item 4). An s_j with ‖s_j‖² ≤ max(eps, 64·machine-eps)·mean‖g‖²
    is skipped (it is zero up to round-off: the domains agree).
    """
    gram = symmetric(gram)
    k = gram.shape[0]
    eye = torch.eye(k, dtype=gram.dtype, device=gram.device)
    specific = eye - 1.0 / k
    rel = max(float(eps), 64 * torch.finfo(gram.dtype).eps)
    min_sq = rel * scale_of(gram) + tiny(gram)

    def fires(dot, own_sq, other_sq):
        return (own_sq > min_sq) & (dot > alpha * own_sq.sqrt() * other_sq.sqrt())

    return specific, sequential_projection(specific, specific, gram, order, fires, min_sq)


def equilibrium_step(w, adjusted_gram, lr, steps):
    """``steps`` projected-gradient steps on ‖Σ_k w_k ŝ_k‖² over [0, 1]^K (Eqs. 7–8).

    ``adjusted_gram`` is Ŝ G Ŝᵀ (the Gramian of the ŝ_k); ∂L/∂w_k = 2 ŝ_kᵀ Σ_j w_j ŝ_j.
    """
    for _ in range(steps):
        w = (w - lr * 2.0 * (adjusted_gram @ w)).clamp(0.0, 1.0)
    return w


class Equilibrium(Weighting):
    """Domain Gradient Equilibrium (Zhang et al. ACM MM 2024): r_k = g_k − w_k ŝ_k, ŝ_k the adjusted
    domain-specific parts; sum (or mean).

    Zhang, Li, Shin, "Embracing Domain Gradient Conflicts: Domain Generalization Using Domain
    Gradient Equilibrium", ACM MM 2024. Implements (spec gradients.md §2.2):
    - Eqs. 2–4: ḡ = mean_k g_k (the invariant part, Eq. 3), s_k = g_k − ḡ;
    - Eq. 5: ŝ_i ← ŝ_i − (ŝ_iᵀs_j/‖s_j‖²) s_j whenever cos(ŝ_i, s_j) > α, for every j ≠ i;
    - Eqs. 6–8: w ∈ [0,1]^K, ``w_steps`` projected-GD steps of size ``w_lr`` on ‖Σ_k w_k ŝ_k‖²;
    - Eq. 9: r_k = g_k − w_k ŝ_k; the update is Σ_k r_k (``reduce="sum"``) or its mean.
    Each task plays the role of a "domain". Every vector is a linear combination of the task
    gradients (coefficient rows C with ŝ = C·g), so all inner products come from the Gramian and
    the answer is the task weights 1 − Ŝᵀw (sum form; divided by K for ``"mean"``).

    The paper's *sequential* form, K optimizer steps per batch with r_0, …, r_{K−1} (all
    computed at the same θ), needs several optimizer steps and is therefore an update protocol,
    not a weighting (DESIGN.md §3.2): ``sequence`` gives its K rows and
    ``GradientEngine.backward_sequence`` steps through them (the ``sdg`` domain's
    ``update: sequential``). With plain SGD it equals one step on Σ_k r_k.

    Facts worth knowing (spec §2.6): Σ_k r_k = K ḡ − Σ_k w_k ŝ_k exactly (averaging minus the
    unresolved residual, whose norm is kept in the non-persistent buffer ``residual_norm``);
    with K = 2, s₁ = −s₂, no adjustment fires and, for equal w (the default), the update is
    plain averaging (weights 1 for "sum", ½ for "mean"). With all gradients identical every
    s_k = 0 and the update is K times the common gradient ("sum"; the common gradient for
    "mean"), with weights 1 (resp. 1/K).

    Choices the paper leaves open (spec §2.6 items 3–5), as parameters: ``w_init`` (initial w),
    ``w_lr`` (η), ``w_steps`` (inner steps per call), ``w_persistent`` (w kept between steps, in
    the buffer ``w`` that checkpoints save — the paper-literal reading — or re-initialised every
    step), ``shuffle`` (random order of the adjustments; default index order), the signed-cosine
    threshold ``alpha``, and ``eps`` (relative guard on ‖s_j‖²).
    A gradient method (DESIGN.md §3.2): the heads get the unweighted ∇Σ L_t.
    """

    name = "equilibrium"
    needs = Needs.GRAMIAN
    scales_heads = False
    params = (
        Param("alpha", float, 0.5, "signed-cosine threshold above which ŝ_i is projected off s_j (Eq. 5)",
              bounds="[-1, 1]"),
        Param("w_init", float, 1.0, "initial reweighting w_k", bounds="[0, 1]"),
        Param("w_lr", float, 0.1, "step size η of the projected gradient descent on w (Eq. 8)", bounds="[0, inf)"),
        Param("w_steps", int, 1, "projected-gradient steps on w per training step", bounds="[0, inf)"),
        Param("w_persistent", bool, True, "keep w between steps (paper); false: restart from w_init"),
        Param("reduce", str, "sum", "combine the r_k by their sum or their mean", choices=("sum", "mean")),
        Param("shuffle", bool, False, "adjust against the other s_j in a random order (torch's global RNG)"),
        Param("eps", float, 1e-8, "relative guard: skip s_j with ‖s_j‖² below eps·mean‖g‖²",
              bounds="[0, inf)"),
    )

    def setup(self):
        self.register_buffer("w", torch.full((len(self.tasks),), self.w_init))
        self.register_buffer("residual_norm", torch.zeros(()), persistent=False)

    def refined(self, gram: Tensor) -> Tensor:
        """The (K, K) coefficient rows of r_k = g_k − w_k ŝ_k (Eq. 9), after the adjustment and
        the reweighting steps of this call (w and the residual norm kept as state)."""
        gram = symmetric(gram)
        k = gram.shape[0]
        order = other_tasks(k, self.shuffle, gram.device)
        _, adjusted = adjusted_specifics(gram, self.alpha, order, self.eps)
        adjusted_gram = adjusted @ gram @ adjusted.T
        start = self.w.to(gram.dtype) if self.w_persistent else torch.full_like(gram[0], self.w_init)
        w = equilibrium_step(start, adjusted_gram, self.w_lr, self.w_steps)
        with torch.no_grad():
            self.w.copy_(w)
            self.residual_norm = (w @ adjusted_gram @ w).clamp_min(0).sqrt().to(self.residual_norm)
        rows = torch.eye(k, dtype=gram.dtype, device=gram.device) - w[:, None] * adjusted
        return rows / k if self.reduce == "mean" else rows

    def weights(self, losses, gram=None, **computed):
        """The summed form: Σ_k r_k = Σ_k (e_k − w_k ŝ_k), i.e. the weights 1 − Ŝᵀw (÷K for "mean")."""
        return self.refined(self._gram(gram)).sum(0)

    def sequence(self, losses, **computed):
        """The paper's form: one optimizer step per refined gradient r_k (Algorithm 1)."""
        self.follow(computed["gram"].dtype if "gram" in computed else losses.dtype)
        return self.refined(self._gram(computed.get("gram")))

    @classmethod
    def noop_reason(cls, num_tasks):
        if num_tasks == 2:
            return ("with two domains s₁ = −s₂, so no adjustment fires, w = (1, 1) is already at equilibrium "
                    "and the update is plain gradient averaging (spec gradients.md §2.6 item 2)")
        return None

    def diagnostics(self):
        return {"residual": self.residual_norm}

    @staticmethod
    def _gram(gram):
        if gram is None:
            raise TypeError("equilibrium needs the Gramian: call weights(losses, gram=G)")
        return gram


@hookimpl
def mtl_register(registry):
    registry.add_weighting(Equilibrium)
