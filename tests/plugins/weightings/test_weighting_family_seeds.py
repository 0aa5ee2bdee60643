"""What the seed gradient weightings GH, GH++, PCGrad, Domain Gradient Equilibrium and CAGrad
share: their registration and declarations, finite weights of the right shape over families of
random Jacobians (m = 2..10, P = 20..50, float64), float32 and a single task, the Gramian
required. Each one's own tests are in test_<name>.py."""
import pytest
import torch

from mtl_platform import registry
from mtl_platform.contracts import Needs
from mtl_platform_plugins.weightings.cagrad import CAGrad
from mtl_platform_plugins.weightings.equilibrium import Equilibrium
from mtl_platform_plugins.weightings.gh import GH
from mtl_platform_plugins.weightings.gh_plus_plus import GHPlusPlus
from mtl_platform_plugins.weightings.pcgrad import PCGrad

from seed_weighting_cases import D, FAMILIES, names, run

pytestmark = pytest.mark.usefixtures("one_thread")

ALL = [
    ("gh", lambda m: GH(names(m))),
    ("gh_plus_plus", lambda m: GHPlusPlus(names(m))),
    ("gh_plus_plus_rotate", lambda m: GHPlusPlus(names(m), rotate=True)),
    ("pcgrad", lambda m: PCGrad(names(m))),
    ("equilibrium", lambda m: Equilibrium(names(m))),
    ("cagrad", lambda m: CAGrad(names(m))),
]


def test_registered_with_their_declarations():
    reg, _ = registry.load()
    found = {c.name: c.cls for c in reg.components("weighting")}
    expected = {"gh": True, "gh_plus_plus": True, "pcgrad": False, "equilibrium": False, "cagrad": False}
    for name, scales_heads in expected.items():
        assert name in found, name
        assert found[name].needs is Needs.GRAMIAN, name
        assert found[name].scales_heads is scales_heads, name
        assert found[name].__doc__.strip().splitlines()[0], name


@pytest.mark.parametrize("label,make", ALL, ids=[a for a, _ in ALL])
def test_finite_weights_of_the_right_shape_over_random_families(label, make):
    for fam, j in FAMILIES:
        weighting = make(j.shape[0])
        w, g = run(weighting, j)
        assert w.shape == (j.shape[0],), (label, fam)
        assert w.dtype == D, (label, fam)
        assert torch.isfinite(w).all() and torch.isfinite(g).all(), (label, fam, w)


@pytest.mark.parametrize("label,make", ALL, ids=[a for a, _ in ALL])
def test_float32_and_a_single_task(label, make):
    j = torch.randn(4, 25)
    w = make(4).weights(torch.ones(4), gram=j @ j.T)
    assert w.dtype == torch.float32 and w.shape == (4,) and torch.isfinite(w).all()
    j1 = torch.randn(1, 25, dtype=D)
    w1, _ = run(make(1), j1)
    assert w1.shape == (1,) and torch.isfinite(w1).all()


@pytest.mark.parametrize("label,make", ALL, ids=[a for a, _ in ALL])
def test_the_gramian_is_required(label, make):
    with pytest.raises(TypeError):
        make(2).weights(torch.ones(2))
