"""ExcessMTL: robust multi-task learning with excess risks (He, Zhou, Zhao, ICML 2024)."""
import torch

from mtl_platform.contracts import Needs, Weighting
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param

from ._lazy_state import LazyBuffers


class ExcessMTL(LazyBuffers, Weighting):
    """ExcessMTL (He et al. ICML 2024): loss weights w ∝ w·exp(η·Ê_t/Ê_t⁰), Ê_t = g_tᵀ diag(√Σg_t²)⁻¹ g_t an
    excess-risk estimate with an Adagrad-style diagonal Hessian.

    He, Zhou, Zhao, "Robust Multi-Task Learning with Excess Risks", ICML 2024. The excess risk
    of task t, L_t(θ) − L_t(θ_t*), is estimated by a second-order Taylor expansion at the task's
    own optimum, ``½ g_tᵀ H_t⁻¹ g_t`` (Eq. 6), with the Hessian replaced by Adagrad's diagonal
    ``H_t ≈ diag(√(S_t + δ))``, S_t the running sum of the squared per-coordinate task
    gradients (Eq. 7): here, as in the authors' code, ``Ê_t = Σ_j g_tj² / √(S_tj + δ)`` with
    S_t including this step's g_t² (the ½ is dropped: it cancels below). Scale processing
    (§3.2): each task's Ê_t is divided by its baseline Ê_t⁰, so tasks with different loss scales
    are compared by their relative excess. The weights follow the exponentiated-gradient
    (mirror-ascent) step of Eq. 9, ``w_t ← w_t exp(η Ê_t/Ê_t⁰)`` renormalised, kept as logits in
    log space (a large excess saturates the weights instead of overflowing).

    How the engine's per-task gradients are used: g_t is row t of the Jacobian the engine
    computes over the gradient space (the shared parameters, ``param`` mode forced: S must
    mean the same coordinates at every step), so the weighting needs the ``JACOBIAN``; S is the
    buffer ``sq_sum`` (m × P, memory as much as the Jacobian), allocated at the first call on
    the Jacobian's device and dtype and restarted (with the baselines) when P changes. The
    answer is task weights applied to the losses: a *loss weighting* (``scales_heads``), every
    parameter gets ∇Σ w_t L_t, as the authors' code and LibMTL backpropagate Σ w_t L_t. The
    weights sum to the number of tasks (LibMTL's scale, EW's w = 1; the paper's simplex
    weights times m: η means the same). Being a loss weighting, its (m,) answer is read as
    task weights even when the gradient space has exactly m coordinates (``combine.answer_hint``).

    Open choices, each documented: the baseline Ê_t⁰ is the mean of Ê_t over the task's first
    ``warmup_steps`` steps, during which its weight does not move (1 = the authors' code and
    LibMTL: the first step's Ê is the baseline and the first update comes at step 2; the paper's
    Appendix C.1 collects statistics for 3 epochs, i.e. 3 × batches per epoch). A baseline of 0
    (the task's gradient was zero throughout its warm-up) gives the task no excess signal
    (Ê/Ê⁰ read as 0) instead of LibMTL's division by 0. ``eps`` = δ = 1e-7 as the authors
    (it is not scale-free: with gradients below ~3e-4 per coordinate Ê grows like g² rather
    than |g|; the ratio Ê/Ê⁰ removes most of that). ``step_size`` η default 1e-2 as LibMTL
    (TorchJD: 1). The losses themselves are not read. S, the logits and the baselines are
    kept in the Jacobian's dtype (the working dtype of a JACOBIAN weighting); Ê is computed in
    float64.

    Identical gradients have equal Ê and Ê⁰: the weights stay 1; one task: w = 1. Partial
    labels (``absent_tasks = "own"``): an absent task (no sample, zero row) adds nothing to S,
    takes no warm-up step and keeps its logit, and the weights are normalised over the
    present tasks (summing to their number, an absent task's weight 0), so the update equals
    the update over the present tasks alone.
    """

    name = "excess_mtl"
    lazy_buffers = ("sq_sum",)
    needs = Needs.JACOBIAN
    scales_heads = True
    mode = "param"
    promises = ("nonnegative",)
    absent_tasks = "own"
    params = (
        Param("step_size", float, 1e-2, "step size η of the exponentiated weight update (robust step size)",
              bounds="(0, inf)"),
        Param("warmup_steps", int, 1, "steps per task whose mean excess is its baseline (weights fixed meanwhile)",
              bounds="[1, inf)"),
        Param("eps", float, 1e-7, "δ in the diagonal Hessian √(Σ g² + δ)", bounds="[0, inf)"),
    )

    def setup(self):
        m = self.num_tasks
        self.register_buffer("sq_sum", torch.zeros(m, 0))
        self.register_buffer("logits", torch.zeros(m))
        self.register_buffer("baseline", torch.zeros(m))      # Σ of the warm-up excesses, then their mean
        self.register_buffer("seen", torch.zeros(m, dtype=torch.long))

    def weights(self, losses, jacobian=None, present=None, **computed):
        if jacobian is None:
            raise TypeError("excess_mtl needs the Jacobian: call weights(losses, jacobian=J)")
        jac = jacobian
        alive = torch.ones(jac.shape[0], dtype=torch.bool, device=jac.device) if present is None else present
        if self.sq_sum.shape != jac.shape:  # first call, or a different gradient space
            self.sq_sum = torch.zeros_like(jac)
            self.baseline = torch.zeros_like(self.baseline)
            self.seen = torch.zeros_like(self.seen)
        sq = jac.square()
        s = self.sq_sum.to(jac) + torch.where(alive.unsqueeze(1), sq, torch.zeros_like(sq))
        g64 = sq.to(torch.float64)
        excess = (g64 / (s.to(torch.float64) + self.eps).sqrt().clamp_min(torch.finfo(torch.float64).tiny)).sum(1)
        excess = torch.where(g64.sum(1) > 0, excess, torch.zeros_like(excess))   # 0/0 when g = 0 and δ = 0
        base = self.baseline.to(torch.float64)
        warming = alive & (self.seen < self.warmup_steps)
        updating = alive & (self.seen >= self.warmup_steps)
        seen = self.seen + alive.long()
        base = torch.where(warming, base + excess, base)
        base = torch.where(warming & (seen == self.warmup_steps), base / self.warmup_steps, base)
        ratio = torch.where(updating & (base > 0), excess / torch.where(base > 0, base, torch.ones_like(base)),
                            torch.zeros_like(excess))
        # a step of 1e4 already sends every other weight to exp(-1e4) = 0: larger ones (or ∞) change nothing
        logits = self.logits.to(torch.float64) + (self.step_size * ratio).nan_to_num(posinf=1e4).clamp(max=1e4)
        top = torch.where(alive, logits, torch.full_like(logits, float("-inf"))).amax()
        logits = torch.where(alive, logits - torch.where(alive.any(), top, torch.zeros_like(top)), logits)
        logits = logits.clamp_min(-1e4)                                  # exp(-1e4) = 0: keeps the logits finite
        share = torch.softmax(torch.where(alive, logits, torch.full_like(logits, float("-inf"))), 0)
        w = torch.where(alive, share * alive.sum(), torch.zeros_like(share))   # no task present: 0, not NaN
        self.sq_sum = s
        self.logits = logits.to(jac.dtype)
        self.baseline = base.to(jac.dtype)
        self.seen = seen
        return w.to(jac.dtype)


@hookimpl
def mtl_register(registry):
    registry.add_weighting(ExcessMTL)
