"""The Jacobians and helpers the tests of the seed gradient weightings share (GH, GH++, PCGrad,
Domain Gradient Equilibrium, CAGrad: test_gh.py, test_gh_plus_plus.py, test_pcgrad.py,
test_equilibrium.py, test_cagrad.py, test_weighting_family_seeds.py): the spec gradients.md §1.14
vectors and families of random Jacobians (m = 2..10, P = 20..50, float64)."""
import torch

from mtl_platform.gradients.combine import call_weighting

D = torch.float64
ATOL = 1e-6


def names(m):
    return [f"t{i}" for i in range(m)]


def run(weighting, jacobian):
    """(weights, combined gradient) through the engine's reference semantics."""
    return call_weighting(weighting, torch.ones(jacobian.shape[0], dtype=jacobian.dtype), jacobian)


def t(*rows):
    return torch.tensor(rows, dtype=D)


def families(seed=0, kinds=("gauss", "near_parallel", "near_opposite", "scaled", "mixed")):
    """Random Jacobians: (label, J) for m = 2..10, P in [20, 50], float64."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for m in range(2, 11):
        for kind in kinds:
            p = int(torch.randint(20, 51, (1,), generator=gen))
            noise = torch.randn(m, p, generator=gen, dtype=D)
            base = torch.randn(1, p, generator=gen, dtype=D)
            if kind == "gauss":
                j = noise
            elif kind == "near_parallel":
                j = base * (0.5 + torch.rand(m, 1, generator=gen, dtype=D)) + 1e-4 * noise
            elif kind == "near_opposite":
                signs = torch.tensor([(-1.0) ** i for i in range(m)], dtype=D)[:, None]
                j = signs * base + 1e-4 * noise
            elif kind == "scaled":
                j = noise * 10.0 ** (6 * torch.rand(m, 1, generator=gen, dtype=D) - 3)
            else:  # mixed: a duplicated row, a conflicting row, scaled rows
                j = noise * 10.0 ** (2 * torch.rand(m, 1, generator=gen, dtype=D) - 1)
                j[-1] = j[0]
                j[1] = -0.9 * j[0] + 0.1 * noise[1]
            out.append((f"{kind}-m{m}-p{p}", j))
    return out


FAMILIES = families()
TWO_TASK = [(label, j) for label, j in families(seed=1) + families(seed=2) if j.shape[0] == 2] + \
    [(f"gauss2-{i}", torch.randn(2, 30, generator=torch.Generator().manual_seed(100 + i), dtype=D)) for i in range(30)]


G1, G2 = t(1.0, 0.0), t(-1.0, 1.0)   # θ = 135°
J2 = torch.stack([G1, G2])
