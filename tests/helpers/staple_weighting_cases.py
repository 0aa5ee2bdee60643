"""The Jacobian families and task names the tests of the LibMTL staples share (RLW, GradNorm,
GradVac, GradDrop, FAMO, DB-MTL: test_rlw.py, test_gradnorm.py, test_gradvac.py,
test_graddrop.py, test_famo.py, test_db_mtl.py, test_weighting_family_staples.py)."""
import torch

D = torch.float64


def tasks(m):
    return [f"t{i}" for i in range(m)]


def jacobian(kind, m, p, gen):
    """One member of a family of (m × P) float64 Jacobians."""
    if kind == "random":
        return torch.randn(m, p, generator=gen, dtype=D)
    base = torch.randn(p, generator=gen, dtype=D)
    noise = 1e-4 * torch.randn(m, p, generator=gen, dtype=D)
    if kind == "near_parallel":
        return base + noise
    if kind == "near_opposite":
        signs = torch.tensor([(-1.0) ** i for i in range(m)], dtype=D)
        return signs[:, None] * base + noise
    if kind == "scaled":
        scale = 10 ** (6 * torch.rand(m, 1, generator=gen, dtype=D) - 3)   # 1e-3 .. 1e3
        return scale * torch.randn(m, p, generator=gen, dtype=D)
    raise ValueError(kind)
