"""CoNAL's supernet: the search space's extremes are the STL and the HPS networks."""
import torch

from mtl_platform_plugins.architectures.conal import CoNAL
from mtl_platform_plugins.architectures.hps import HPS
from mtl_platform_plugins.domains.synthetic_regression.domain import SyntheticRegression

from conftest import make_domain

TASKS = ["task0", "task1", "task2"]


def domain():
    return make_domain(SyntheticRegression, activations=["sinc"] * 3, train_samples=16)


def independent(d):
    """A supernet with independently drawn copies (with the symmetric start every path computes
    the same function, so these tests could not tell a private path from the shared one)."""
    return CoNAL(TASKS, d.encoder_factory, d.head_factory, search={"symmetric_init": False})


def force(model, point):
    """Put all of every task's softmax mass on one branch point (1-based)."""
    with torch.no_grad():
        for a in model.alpha.values():
            a.fill_(-1e4)
            a[point - 1] = 1e4


def test_extremes_are_the_stl_and_the_hps_networks():
    d = domain()
    torch.manual_seed(0)
    conal = independent(d)
    x = torch.randn(5, 200)
    force(conal, 1)  # every task branches before the first shared stage: its private network alone
    out = conal(x)
    for t in TASKS:
        assert torch.allclose(out[t], conal.heads[t](conal.private[t](x)), atol=1e-6)
    force(conal, conal.points)  # every task branches after the last stage: HPS with f_S
    hps = HPS(TASKS, d.encoder_factory, d.head_factory)
    hps.encoder.load_state_dict(conal.shared.state_dict())
    hps.heads.load_state_dict(conal.heads.state_dict())
    out, ref = conal(x), hps(x)
    for t in TASKS:
        assert torch.allclose(out[t], ref[t], atol=1e-6)
    assert conal.branch_points() == {t: conal.points for t in TASKS}


def test_alpha_starts_uniform_and_learns_from_its_own_task_only():
    d = domain()
    torch.manual_seed(0)
    conal = independent(d)
    assert conal.points == 4 and all(torch.equal(a, torch.zeros(4)) for a in conal.alpha.values())
    conal(torch.randn(6, 200))["task1"].pow(2).mean().backward()
    assert conal.alpha["task1"].grad.abs().sum() > 0
    assert conal.alpha["task0"].grad is None and conal.alpha["task2"].grad is None
