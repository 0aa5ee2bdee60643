"""The Jacobian families, the brute-force min-norm reference and the tiny model that the tests of
the solver weightings share (MGDA, Nash-MTL, UPGrad, IMTL-G, Aligned-MTL and their torch solvers:
test_solvers.py, test_mgda.py, test_nash_mtl.py, test_upgrad.py, test_imtl.py,
test_aligned_mtl.py, test_weighting_family_solvers.py)."""
import itertools
import math

import torch
from torch import nn

from mtl_platform.gradients.combine import call_weighting

F64 = torch.float64
KINDS = ("random", "parallel", "opposite", "scaled", "lowrank", "conflict")


def family(kind, m, p=30, seed=0):
    """A random (m × p) float64 Jacobian of one of the test families."""
    gen = torch.Generator().manual_seed(seed * 1000 + m)
    j = torch.randn(m, p, generator=gen, dtype=F64)
    if kind == "parallel":      # all rows within ~1e-4 of one direction
        j = torch.randn(p, generator=gen, dtype=F64) + 1e-4 * j
    elif kind == "opposite":    # rows alternate ±base, up to 1e-3 noise
        sign = torch.tensor([(-1.0) ** i for i in range(m)], dtype=F64)
        j = sign[:, None] * torch.randn(p, generator=gen, dtype=F64) + 1e-3 * j
    elif kind == "scaled":      # row norms spread over 1e-3 .. 1e3
        j = j * 10 ** (torch.rand(m, 1, generator=gen, dtype=F64) * 6 - 3)
    elif kind == "lowrank":     # rank 2
        j = torch.randn(m, 2, generator=gen, dtype=F64) @ torch.randn(2, p, generator=gen, dtype=F64)
    elif kind == "conflict":    # mean pulled out: many negative inner products
        j = j - 0.8 * j.mean(0)
    return j


def tasks(m):
    return [f"t{i}" for i in range(m)]


def run(weighting, j, losses=None):
    losses = torch.rand(j.shape[0], dtype=F64) + 0.5 if losses is None else losses
    return call_weighting(weighting, losses, j)


def identical(m, p=20, seed=3):
    g = torch.randn(p, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return g, g.expand(m, p).clone()


def brute_min_norm(gram):
    """Exact min-norm weights by enumerating every support and solving its KKT system."""
    m = gram.shape[0]
    best, best_f = None, math.inf
    for r in range(1, m + 1):
        for support in itertools.combinations(range(m), r):
            s = list(support)
            a = torch.zeros(r + 1, r + 1, dtype=F64)
            a[:r, :r] = gram[s][:, s]
            a[:r, r] = 1
            a[r, :r] = 1
            rhs = torch.zeros(r + 1, 1, dtype=F64)
            rhs[r] = 1
            sol = torch.linalg.lstsq(a, rhs, driver="gelsd").solution[:, 0]
            w = torch.zeros(m, dtype=F64)
            w[s] = sol[:r]
            if (w < -1e-12).any() or abs(float(w.sum()) - 1) > 1e-9:
                continue
            w = w.clamp_min(0) / w.clamp_min(0).sum()
            f = float(w @ gram @ w)
            if f < best_f:
                best, best_f = w, f
    return best


class TinyNet(nn.Module):
    has_rep = True

    def __init__(self, m):
        super().__init__()
        torch.manual_seed(0)
        self.shared = nn.Linear(4, 6).double()
        self.heads = nn.ModuleList(nn.Linear(6, 1).double() for _ in range(m))
        self.rep = None

    def forward(self, x):
        z = torch.tanh(self.shared(x))
        self.rep = z
        return [h(z).squeeze(-1) for h in self.heads]

    def shared_parameters(self):
        return list(self.shared.parameters())

    def task_parameters(self, task):
        return list(self.heads[int(task[1:])].parameters())

    def parameter_blocks(self):
        return [self.shared_parameters()]
