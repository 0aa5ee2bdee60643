"""Gradient Vaccine (Wang, Tsvetkov, Firat, Cao, ICLR 2021, Eqs. 3–5 and Algorithm 1)."""
import torch

from mtl_platform.contracts import Needs, Weighting
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param

EPS = 1e-12      # ‖g‖² ≤ EPS · mean_t ‖g_t‖² (per block) counts as a zero gradient
SIN_EPS = 1e-8   # floor on sin(θ̂) = √(1 − φ̂²) in the coefficient's denominator


class GradVac(Weighting):
    """Gradient Vaccine (Wang et al. ICLR 2021): pull each task's gradient towards an EMA target cosine with
    the others.

    Wang, Tsvetkov, Firat, Cao, "Gradient Vaccine: Investigating and Improving Multi-task
    Optimization in Massively Multilingual Models", ICLR 2021, §3 (Eqs. 3–5: the closed-form
    adjustment and the EMA target) and Algorithm 1. For every task i, the other tasks j are
    visited in a random order; with φ_ij = cos(g_i', g_j) (g_i' the partly adjusted gradient)
    and the target φ̂_ij:

    - if φ_ij < φ̂_ij: g_i' ← g_i' + a·g_j with the closed form
      a = ‖g_i'‖ (φ̂_ij √(1−φ_ij²) − φ_ij √(1−φ̂_ij²)) / (‖g_j‖ √(1−φ̂_ij²)),
      after which cos(g_i', g_j) = φ̂_ij exactly;
    - φ̂_ij ← (1−β) φ̂_ij + β φ_ij (φ̂ starts at 0, one entry per ordered pair);

    and the update is Σ_i g_i'. Since every g_i' stays a combination of the task gradients,
    all of it is expressed through the Gramian: g_i' = c_iᵀJ, g_i'·g_j = (c_iᵀG)_j,
    ‖g_i'‖² = c_iᵀGc_i, and the returned task weights are w = Σ_i c_i (m,). The tasks i are
    processed in parallel (they do not interact within a step), the pairs of one task in
    sequence, so a step costs m−1 batched m×m products.

    Granularity (which parameters one set of targets covers is a choice): ``per_block: false``
    (default) runs it once on the whole gradient space (needs ``GRAMIAN``, returns (m,)
    weights; works in ``param`` and ``rep`` mode). ``per_block: true`` runs it separately on
    every parameter block (``parameter_blocks()``, one per encoder stage — the per-layer form),
    with its own targets per block and its own random order; it needs ``BLOCK_GRAMIANS`` and
    returns (blocks × m) weights. ``needs`` is therefore set per instance in ``setup`` (the
    engine reads ``weighting.needs`` from the instance; the class attribute shows the default).

    Choices the paper leaves open: a pair in which either gradient is (numerically) zero —
    ‖g‖² ≤ 1e-12 × the block's mean ‖g_t‖² — is neither adjusted nor used to update its
    target, since a zero gradient has no direction; √(1−φ̂²) in the denominator is floored at
    1e-8; cosines are clamped into [−1, 1]. The random
    order uses torch's global generator. With all task gradients agreeing (φ_ij ≥ φ̂_ij, e.g.
    positive cosines at the first step, or identical gradients at any step) nothing is adjusted
    and the update is the plain sum, i.e. m times the common gradient when all are identical.
    A gradient method: the shared space gets the combined gradient, every other parameter
    ∇ Σ_t L_t. The targets live in the buffer ``targets`` (blocks × m × m) and checkpoint.
    """

    name = "gradvac"
    needs = Needs.GRAMIAN
    scales_heads = False
    promises = ("nonnegative",)
    params = (
        Param("beta", float, 0.01, "EMA rate β of the target cosines φ̂ (0 ≤ β ≤ 1)", bounds="[0, 1]"),
        Param("per_block", bool, False, "one set of targets per parameter block (per-layer form; "
              "needs block Gramians) instead of one for the whole gradient"),
    )

    def setup(self):
        self.needs = Needs.BLOCK_GRAMIANS if self.per_block else Needs.GRAMIAN
        m = self.num_tasks
        # (blocks, m, m); the number of blocks is known at the first call when per_block
        self.register_buffer("targets", torch.zeros(0 if self.per_block else 1, m, m))

    def weights(self, losses, gram=None, block_grams=None, **computed):
        grams = block_grams if self.per_block else gram.unsqueeze(0)
        out = self.vaccinate(grams)
        return out if self.per_block else out[0]

    def vaccinate(self, grams):
        """Batched Algorithm 1 over (blocks, m, m) Gramians → (blocks, m) task weights."""
        blocks, m, _ = grams.shape
        dtype, device = grams.dtype, grams.device
        if self.targets.shape[0] != blocks:  # first call (or the block structure changed)
            self.targets = torch.zeros(blocks, m, m, dtype=self.targets.dtype, device=device)
        target = self.targets.to(dtype=dtype, device=device)
        eye = torch.eye(m, dtype=dtype, device=device)
        coeff = eye.expand(blocks, m, m).clone()             # row i: c_i, g_i' = c_iᵀJ
        sq_norms = grams.diagonal(dim1=-2, dim2=-1).clamp_min(0)
        floor = (EPS * sq_norms.mean(-1, keepdim=True)).clamp_min(torch.finfo(dtype).tiny)   # (blocks, 1)
        # a random order of the other tasks j for every (block, i): i itself sorts last
        keys = torch.rand(blocks, m, m, device=device) + 2 * eye.to(torch.float32)
        order = keys.argsort(dim=-1)[..., : m - 1]
        tasks = torch.arange(m, device=device)
        for k in range(m - 1):
            pick = (order[..., k, None] == tasks).to(dtype)   # row i: one-hot of its k-th j
            cg = coeff @ grams
            dot = (cg * pick).sum(-1)                          # g_i'·g_j
            sq_i = (cg * coeff).sum(-1).clamp_min(0)
            sq_j = (pick * sq_norms.unsqueeze(-2)).sum(-1)
            valid = (sq_i > floor) & (sq_j > floor)
            norm_i, norm_j = sq_i.sqrt(), sq_j.sqrt()
            denom = torch.where(valid, norm_i * norm_j, torch.ones_like(dot))
            phi = torch.where(valid, dot / denom, torch.zeros_like(dot)).clamp(-1.0, 1.0)
            phi_hat = (target * pick).sum(-1).clamp(-1.0, 1.0)
            sin_phi = (1 - phi * phi).clamp_min(0).sqrt()
            sin_hat = (1 - phi_hat * phi_hat).clamp_min(0).sqrt()
            a = norm_i * (phi_hat * sin_phi - phi * sin_hat) / (
                torch.where(valid, norm_j, torch.ones_like(norm_j)) * sin_hat.clamp_min(SIN_EPS))
            adjust = valid & (phi < phi_hat)
            coeff = coeff + torch.where(adjust, a, torch.zeros_like(a)).unsqueeze(-1) * pick
            step = torch.where(valid, phi - phi_hat, torch.zeros_like(phi))
            target = target + self.beta * step.unsqueeze(-1) * pick
        self.targets = target.to(self.targets.dtype)
        return coeff.sum(-2)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        saved = state_dict.get(prefix + "targets")
        if saved is not None and saved.shape != self.targets.shape:  # lazily sized per block
            self.targets = torch.zeros(saved.shape, dtype=self.targets.dtype, device=self.targets.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


@hookimpl
def mtl_register(registry):
    registry.add_weighting(GradVac)
