"""SDMGrad: stochastic direction-oriented multi-objective gradient (Xiao, Ban, Ji, NeurIPS 2023)."""
import torch

from mtl_platform.contracts import Needs, Weighting
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param

from ._solvers import project_simplex_over, tiny, working_gram


class SDMGrad(Weighting):
    """SDMGrad (Xiao et al. NeurIPS 2023): simplex weights w minimising ½‖Jᵀw + λ g₀‖² by projected SGD,
    update (Jᵀw + λ g₀)/(1 + λ).

    Xiao, Ban, Ji, "Direction-oriented Multi-objective Learning: Simple and Provable
    Stochastic Algorithms", NeurIPS 2023, Eqs. 5–6 and Algorithm 1 (SDMGrad): the
    direction-oriented problem ``min_{w ∈ Δ} ½‖Jᵀw + λ g₀‖²`` with ``g₀ = Jᵀ1/m`` the mean
    gradient (the target direction), solved by ``n_iter`` projected stochastic gradient steps
    ``w ← Π_Δ(w − lr·v)``, ``v ← momentum·v + (G w + λ G 1/m)`` (heavy-ball SGD with the
    authors' lr and momentum 0.5, as in their code and LibMTL), warm-started from the last
    step's w (state, checkpointed); the model's update is ``d = (Jᵀw + λ g₀)/(1 + λ)``, i.e.
    task weights ``(w + λ/m)/(1 + λ)`` (λ = ``lamda``; λ → ∞ is the mean, λ = 0 MGDA's
    problem). G is first divided by ``s²``, s the mean task-gradient norm, so ``lr`` means the
    same whatever the gradients' scale (the authors and LibMTL divide by s² + 1e-8; the 1e-8
    is dropped here, which keeps tiny gradients scale-free).

    The stochastic variant on one batch (the choice the engine imposes): the paper draws ξ, ξ'
    for the two Jacobians of the inner problem's Gramian and ζ for the update; the engine
    serves one Jacobian per step, so all three are the batch (biased like MoDo's, see there).
    SDMGrad-OS's task sampling (objective sampling for many tasks) is not implemented.
    ``lr`` default 5 as LibMTL (TorchJD uses 10). Identical gradients keep w uniform and give
    d = g; one task: d = g₁. A gradient method (DESIGN.md §3.2). Partial labels
    (``absent_tasks = "own"``): m, the mean g₀, the scale s and the simplex are those of the
    present tasks.
    """

    name = "sdmgrad"
    needs = Needs.GRAMIAN
    scales_heads = False
    promises = ("nonnegative",)
    absent_tasks = "own"
    params = (
        Param("lamda", float, 0.3, "λ: the pull towards the mean gradient g₀ (0: MGDA's problem)", bounds="[0, inf)"),
        Param("n_iter", int, 20, "projected SGD steps on w per training step", bounds="[1, inf)"),
        Param("lr", float, 5.0, "step size of the inner SGD on the scaled Gramian", bounds="(0, inf)"),
        Param("momentum", float, 0.5, "heavy-ball momentum of the inner SGD", bounds="[0, 1)"),
    )

    def setup(self):
        m = self.num_tasks
        self.register_buffer("w", torch.full((m,), 1.0 / m))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def weights(self, losses, gram=None, present=None, **computed):
        if gram is None:
            raise TypeError("sdmgrad needs the Gramian: call weights(losses, gram=G)")
        g = working_gram(gram)
        alive = torch.ones(g.shape[0], dtype=torch.bool, device=g.device) if present is None else present
        count = alive.sum().clamp_min(1)
        uniform = alive.to(g.dtype) / count
        norms = torch.diagonal(g).clamp_min(0).sqrt()
        scale = (torch.where(alive, norms, torch.zeros_like(norms)).sum() / count).square()
        a = g / torch.where(scale > tiny(scale), scale, torch.ones_like(scale))
        pull = self.lamda * (a @ uniform)                          # λ G 1/m
        # the first step starts from 1/m in the working dtype (the buffer's float32 1/m is rounded)
        w = torch.where(self.steps > 0, self.w.to(g), uniform)
        velocity = torch.zeros_like(w)
        for step in range(self.n_iter):
            velocity = (self.momentum * velocity if step else velocity) + a @ w + pull
            w = project_simplex_over(w - self.lr * velocity, alive)
        self.w = w
        self.steps = self.steps + 1
        return ((w + self.lamda * uniform) / (1 + self.lamda)).to(gram.dtype)


@hookimpl
def mtl_register(registry):
    registry.add_weighting(SDMGrad)
