"""GH++ (Huang, Song, Zhang, IEEE TPAMI 2024, §3.5–3.6), loss-weight form Eq. 43."""
import math

import torch

from mtl_platform.contracts import Needs, Weighting
from mtl_platform.errors import UserError
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param

from ._solvers import symmetric, tiny

# Below this sin θ_ij the pair is (numerically) anti-parallel and its plane is undefined (rotate only).
_MIN_SIN = 1e-6


def pair_angles(gram):
    """(conflict, φ, cos θ, sin θ, norms) for every pair: φ_ij = θ_ij − π/2, cos clamped into [−1, 1]."""
    gram = symmetric(gram)
    m = gram.shape[0]
    norms = torch.diagonal(gram).clamp_min(0).sqrt()
    eye = torch.eye(m, dtype=torch.bool, device=gram.device)
    conflict = (gram < 0) & ~eye
    cos = (gram / (norms[:, None] * norms[None, :]).clamp_min(tiny(gram))).clamp(-1.0, 1.0)
    sin = (1.0 - cos * cos).clamp_min(0).sqrt()
    phi = torch.arccos(cos) - math.pi / 2
    return conflict, phi, cos, sin, norms


def order_rank(tasks, priority, device):
    """Position of every task in GH++'s order: listed order, with ``priority`` (if given) moved first."""
    order = list(range(len(tasks)))
    if priority is not None:
        first = tasks.index(priority)
        order = [first] + [i for i in order if i != first]
    rank = [0] * len(tasks)
    for position, task in enumerate(order):
        rank[task] = position
    return torch.tensor(rank, device=device)


def rotation_terms(gram, before, lam):
    """The pairwise rotations of ``gh++_rotate`` (spec §1.3; our construction, not the paper's).

    For a conflicting pair, g_i is rotated towards g_j in their plane, keeping its norm, by
    B_ij = λφ_ij if i comes before j, else (1−λ)φ_ij; the two rotated vectors are orthogonal:
    ĝ_i^(j) = (1 + own[i, j]) g_i + cross[i, j] g_j. Returns (own, cross, conflict), with
    own = cos B − sin B·cos θ/sin θ − 1 and cross = ‖g_i‖ sin B / (‖g_j‖ sin θ). When
    sin θ < 1e-6 (anti-parallel: the plane is undefined) the limit of the combined vector is
    used instead: own = cos B − 1, cross = 0.
    """
    conflict, phi, cos, sin, norms = pair_angles(gram)
    turn = torch.where(before, lam * phi, (1.0 - lam) * phi)
    defined = sin > _MIN_SIN
    safe_sin = torch.where(defined, sin, torch.ones_like(sin))
    ratio = norms[:, None] / norms[None, :].clamp_min(tiny(gram))
    own = torch.where(defined, torch.cos(turn) - torch.sin(turn) * cos / safe_sin, torch.cos(turn)) - 1.0
    cross = torch.where(defined, ratio * torch.sin(turn) / safe_sin, torch.zeros_like(sin))
    zero = torch.zeros_like(own)
    return torch.where(conflict, own, zero), torch.where(conflict, cross, zero), conflict


class GHPlusPlus(Weighting):
    """GH++ (Huang et al. TPAMI 2024): angle-dependent asymmetric loss weights τ₁ = 1+2 sin(λφ/2), τ₂ = 1+2
    sin((λ−1)φ/2), φ = θ₁₂−π/2.

    Huang, Song, Zhang, "Gradient Harmonization in Unsupervised Domain Adaptation", IEEE TPAMI
    2024 (arXiv 2408.00288), §3.5 Eqs. 33–40 (Theorem 2) and the loss-weight form Eq. 43,
    applied only when g₁ᵀg₂ < 0 (τ = 1 otherwise). λ = 0.5 in all the paper's experiments.
    As written in the paper and its code, Eq. 35 only *rescales* the gradients (spec §1.3,
    "Surprise 2"): task 1 is up-weighted (τ₁ ≥ 1), task 2 down-weighted (τ₂ ≤ 1), and the angle
    between the two stays obtuse. λ = 0 leaves g₁ alone; λ = 1 leaves g₂ alone.

    Choices the paper leaves open, as parameters:
    - ``priority``: which task is "task 1" (the up-weighted one). The paper's convention is
      L₁ = alignment but its code is inconsistent (spec §1.7); default: the first listed task.
    - m tasks (spec §1.14, ours): tasks are ordered (``priority`` first, then listed order);
      for every conflicting pair (i, j) with i before j, τ_i is multiplied by 1+2 sin(λφ_ij/2)
      and τ_j by 1+2 sin((λ−1)φ_ij/2), starting from τ = 1. The result depends on task order.
    - ``clamp_nonnegative`` (spec §1.13 item 4): for λ < 1/3 a factor can be negative (λ = 0,
      θ = 180° gives τ₂ = −0.414), which flips loss 2; the flag clamps τ ≥ 0. Off by default.
    - ``tau_max`` (ours; off by default): τ_k ← min(τ_k, tau_max) for each task, after the clamp,
      with tau_max ≥ 1 so a task without conflict keeps τ_k = 1. With m = 2 and the paper's
      formula τ₁ ≤ 1 + 2 sin(π/4) ≈ 2.41 already; products over many pairs (m > 2) and
      ``rotate``'s 1/sin θ terms are not bounded. A cut τ_k is no longer Eq. 43's weight.
    - ``rotate`` (experimental, *not* the paper's formula; spec §1.3/§1.14 "gh++_rotate"): the
      geometrically exact reading — in the plane of each conflicting pair, rotate g_i towards
      g_j by λφ and g_j towards g_i by (1−λ)φ, keeping norms, so the two become orthogonal.
      Pairs are combined additively as in GH: τ = 1 + Σ over conflicting pairs of
      (rotated − original) coefficients. Near anti-parallel pairs (sin θ → 0) the individual
      coefficients grow like 1/sin θ although their combination stays bounded.

    With no conflict, or when all gradients are identical, τ = 1 (the plain sum).
    A loss weighting (DESIGN.md §3.2): the heads also receive ∇Σ τ_k L_k.
    """

    name = "gh_plus_plus"
    needs = Needs.GRAMIAN
    scales_heads = True
    promises = ("nonnegative",)  # the paper's form with λ ≥ 1/3, or clamped: see setup
    params = (
        Param("lam", float, 0.5, "λ: the share of the angle φ = θ−π/2 given to the prior task", bounds="[0, 1]"),
        Param("priority", str, None, "task that comes first (up-weighted); null: the listed order", optional=True),
        Param("rotate", bool, False, "experimental: rotate each conflicting pair in its plane (gh++_rotate)"),
        Param("clamp_nonnegative", bool, False, "clamp τ ≥ 0 (negative for λ < 1/3 and wide angles)"),
        Param("tau_max", float, None, "upper bound on each τ_k, ≥ 1 (null: unbounded, the paper's Eq. 43)",
              optional=True, bounds="[1, inf)"),
    )

    def setup(self):
        if self.priority is not None and self.priority not in self.tasks:
            raise UserError(f"gh_plus_plus: priority {self.priority!r} is not a task; tasks: {', '.join(self.tasks)}")
        if not self.clamp_nonnegative and (self.rotate or self.lam < 1 / 3):
            self.promises = ()
        self.register_buffer("rank", order_rank(self.tasks, self.priority, "cpu"), persistent=False)

    def weights(self, losses, gram=None, **computed):
        if gram is None:
            raise TypeError("gh_plus_plus needs the Gramian: call weights(losses, gram=G)")
        rank = self.rank.to(gram.device)
        before = rank[:, None] < rank[None, :]
        if self.rotate:
            own, cross, _ = rotation_terms(gram, before, self.lam)
            tau = 1.0 + own.sum(1) + cross.sum(0)
        else:
            conflict, phi, *_ = pair_angles(gram)
            up = 1.0 + 2.0 * torch.sin(self.lam * phi / 2)
            down = 1.0 + 2.0 * torch.sin((self.lam - 1.0) * phi / 2)
            factor = torch.where(conflict, torch.where(before, up, down), torch.ones_like(phi))
            tau = factor.prod(dim=1)
        if self.clamp_nonnegative:
            tau = tau.clamp_min(0)
        return tau if self.tau_max is None else tau.clamp(max=self.tau_max)


@hookimpl
def mtl_register(registry):
    registry.add_weighting(GHPlusPlus)
