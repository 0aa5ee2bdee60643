"""What the solver-based weightings MGDA, Nash-MTL, UPGrad, IMTL-G and Aligned-MTL share: their
registration and parameters, finite weights of the right shape on every Jacobian family, float32
and the Gramian required, permutation equivariance, and the weighted combination applied through
the engine. Each one's own tests are in test_<name>.py, their solvers' in test_solvers.py."""
import pytest
import torch

from mtl_platform import registry
from mtl_platform.gradients import GradientEngine
from mtl_platform_plugins.weightings.aligned_mtl import AlignedMTL
from mtl_platform_plugins.weightings.imtl import IMTL
from mtl_platform_plugins.weightings.mgda import MGDA
from mtl_platform_plugins.weightings.nash_mtl import NashMTL
from mtl_platform_plugins.weightings.upgrad import UPGrad

from solver_weighting_cases import F64, KINDS, TinyNet, family, run, tasks

ALL = {"mgda": MGDA, "nash_mtl": NashMTL, "upgrad": UPGrad, "imtl": IMTL, "aligned_mtl": AlignedMTL}


def test_registered_with_their_params():
    reg, _ = registry.load()
    comps = {c.name: c for c in reg.components("weighting")}
    want = {"mgda": {"normalization", "iterations", "tol", "ub"},
            "nash_mtl": {"update_weights_every", "optim_niter", "max_norm", "eps"},
            "upgrad": {"iterations", "tol"}, "imtl": {"rcond"}, "aligned_mtl": {"eps", "preferences", "scale"}}
    for name, params in want.items():
        cls = comps[name].cls
        assert cls is ALL[name]
        assert params <= {p.name for p in cls.declared_params()}
        assert cls.scales_heads is False and cls.needs.value == "gramian"
        assert cls.__doc__.strip().splitlines()[0]


@pytest.mark.parametrize("name", sorted(ALL))
def test_finite_weights_of_the_right_shape_on_every_family(name):
    for kind in KINDS:
        for m in (2, 3, 5, 10):
            j = family(kind, m, p=40, seed=7)
            w, d = run(ALL[name](tasks(m)), j)
            assert w.shape == (m,) and torch.isfinite(w).all() and torch.isfinite(d).all(), (name, kind, m)
    # float32 Gramian in, float32 weights out
    j = family("random", 4).float()
    w = ALL[name](tasks(4)).weights(torch.ones(4), gram=j @ j.T)
    assert w.dtype == torch.float32 and torch.isfinite(w).all()
    with pytest.raises(TypeError, match="Gramian"):
        ALL[name](tasks(2)).weights(torch.ones(2))


@pytest.mark.parametrize("name", sorted(ALL))
def test_permuting_tasks_permutes_the_weights(name):
    for m in (3, 6):
        j = family("conflict", m, seed=4)
        perm = torch.randperm(m, generator=torch.Generator().manual_seed(m))
        w, _ = run(ALL[name](tasks(m)), j, torch.ones(m, dtype=F64))
        wp, _ = run(ALL[name](tasks(m)), j[perm], torch.ones(m, dtype=F64))
        assert torch.allclose(wp, w[perm], rtol=1e-8, atol=1e-10), name


@pytest.mark.parametrize("name", sorted(ALL))
def test_engine_applies_the_weighted_combination(name):
    m = 3
    model = TinyNet(m)
    weighting = ALL[name](tasks(m))
    x = torch.randn(8, 4, dtype=F64, generator=torch.Generator().manual_seed(1))
    outs = model(x)
    losses = {t: (o ** 2).mean() for t, o in zip(tasks(m), outs)}
    shared = model.shared_parameters()
    jac = torch.stack([torch.cat([g.flatten() for g in torch.autograd.grad(losses[t], shared, retain_graph=True)])
                       for t in tasks(m)])
    expected_w = ALL[name](tasks(m)).weights(torch.stack(list(losses.values())).detach(), gram=jac @ jac.T)
    GradientEngine(model, weighting, tasks(m)).backward(losses)
    got = torch.cat([p.grad.flatten() for p in shared])
    assert torch.allclose(got, expected_w @ jac, atol=1e-10)
