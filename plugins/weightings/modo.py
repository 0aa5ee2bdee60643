"""MoDo: multi-objective gradient with double sampling (Chen, Fernando, Ying, Chen, NeurIPS 2023)."""
import torch

from mtl_platform.contracts import Needs, Weighting
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param

from ._solvers import project_simplex_over, working_gram


class MoDo(Weighting):
    """MoDo (Chen et al. NeurIPS 2023): simplex weights λ tracked by one projected step λ ← Π_Δ(λ − γ(Gλ +
    ρλ)) per batch.

    Chen, Fernando, Ying, Chen, "Three-Way Trade-Off in Multi-Objective Learning:
    Optimization, Generalization and Conflict-Avoidance", NeurIPS 2023 (JMLR 2024),
    Algorithm 1 (MoDo): λ_{k+1} = Π_Δ(λ_k − γ(∇F(x; z₁)ᵀ∇F(x; z₂) λ_k + ρ λ_k)) and the model
    step along ∇F(x; z₃) λ_{k+1}, where ∇F(x; z) is the task Jacobian on sample z and Π_Δ the
    Euclidean projection onto the simplex (``_solvers.project_simplex``). λ starts at 1/m and
    is state (checkpointed, in the working dtype). The answer is the task weights λ_{k+1}:
    a convex combination, the scale of one gradient (not EW's sum).

    Double sampling on one batch (the choice the engine imposes): the engine computes one
    Jacobian per step, so z₁ = z₂ = z₃ = the batch and the λ step uses its Gramian
    G = J Jᵀ. The paper's independent z₁, z₂ make ∇Fᵀ∇F λ an unbiased estimate of the full
    Gramian's product; with one batch it is biased by the batch's gradient variance (LibMTL
    draws three batches per step instead; splitting a batch in three would need three
    Jacobians, which the weighting seam does not provide). ``gamma`` = 1e-3 and ``rho`` = 0.1
    are LibMTL's defaults; the step is not normalised, so γ must suit the gradients' scale.
    Identical gradients keep λ uniform; one task: λ = 1. A gradient method (DESIGN.md §3.2).
    Partial labels (``absent_tasks = "own"``): the step projects onto the simplex of the
    present tasks (an absent task gets λ = 0 for that step; the first step starts from the
    present tasks' uniform weights).
    """

    name = "modo"
    needs = Needs.GRAMIAN
    scales_heads = False
    promises = ("nonnegative",)
    absent_tasks = "own"
    params = (
        Param("gamma", float, 1e-3, "step size γ of the task weights λ", bounds="(0, inf)"),
        Param("rho", float, 0.1, "ℓ2 regularisation ρ of the λ step", bounds="[0, inf)"),
    )

    def setup(self):
        m = self.num_tasks
        self.register_buffer("lam", torch.full((m,), 1.0 / m))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def weights(self, losses, gram=None, present=None, **computed):
        if gram is None:
            raise TypeError("modo needs the Gramian: call weights(losses, gram=G)")
        g = working_gram(gram)
        alive = torch.ones(g.shape[0], dtype=torch.bool, device=g.device) if present is None else present
        uniform = alive.to(g.dtype) / alive.sum().clamp_min(1)
        # the first step starts from 1/m in the working dtype (the buffer's float32 1/m is rounded)
        lam = torch.where(self.steps > 0, self.lam.to(g), uniform)
        lam = project_simplex_over(lam - self.gamma * (g @ lam + self.rho * lam), alive)
        self.lam = lam
        self.steps = self.steps + 1
        return lam.to(gram.dtype)


@hookimpl
def mtl_register(registry):
    registry.add_weighting(MoDo)
