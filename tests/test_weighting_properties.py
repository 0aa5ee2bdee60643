"""Properties every registered weighting must have, over families of random Jacobians
(m = 2..10): finite answers of an allowed shape; agreeing gradients give a positive multiple
of the common gradient; and each one trains the tiny MultiMNIST run end to end."""
import pytest
import torch

from mtl_platform import registry, session
from mtl_platform.contracts import Needs
from mtl_platform.gradients.combine import call_weighting, form

from conftest import weighting_args

REG, _ = registry.load()
NAMES = REG.names("weighting")


def make(name, m):
    tasks = [f"t{i}" for i in range(m)]
    return REG.get("weighting", name).cls(tasks, **weighting_args(name, tasks))


def family(kind, m, p=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(p, generator=g, dtype=torch.float64)
    if kind == "random":
        return torch.randn(m, p, generator=g, dtype=torch.float64)
    if kind == "near_parallel":
        return base + 1e-3 * torch.randn(m, p, generator=g, dtype=torch.float64)
    if kind == "near_opposite":
        signs = torch.tensor([(-1.0) ** i for i in range(m)], dtype=torch.float64)[:, None]
        return signs * base + 1e-3 * torch.randn(m, p, generator=g, dtype=torch.float64)
    if kind == "scaled":
        scales = torch.logspace(-3, 3, m, dtype=torch.float64)[:, None]
        return scales * torch.randn(m, p, generator=g, dtype=torch.float64)
    raise ValueError(kind)


def call(weighting, jac, losses=None, blocks=None):
    m = jac.shape[0]
    losses = losses if losses is not None else torch.linspace(0.5, 2.0, m, dtype=jac.dtype)
    sizes = blocks or [jac.shape[1] // 2, jac.shape[1] - jac.shape[1] // 2]
    if weighting.needs is not Needs.BLOCK_GRAMIANS:
        sizes = [jac.shape[1]]
    return call_weighting(weighting, losses, jac, sizes), sizes


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", ["random", "near_parallel", "near_opposite", "scaled"])
def test_finite_answers_of_an_allowed_shape(name, kind):
    for m in (2, 3, 5, 10):
        torch.manual_seed(m)
        weighting = make(name, m).double()
        jac = family(kind, m, seed=m)
        for _ in range(3):  # stateful weightings: a few steps
            (answer, combined), sizes = call(weighting, jac)
            assert form(answer, m, jac.shape[1], len(sizes)) in ("weights", "block_weights", "vector")
            assert torch.isfinite(answer).all(), (name, kind, m, answer)
            assert torch.isfinite(combined).all() and combined.shape == (jac.shape[1],)


@pytest.mark.parametrize("name", NAMES)
def test_agreeing_gradients_give_a_positive_multiple_of_the_common_gradient(name):
    for m in (1, 2, 4):
        torch.manual_seed(0)
        weighting = make(name, m).double()
        g = torch.randn(24, dtype=torch.float64)
        jac = g.repeat(m, 1)
        (answer, combined), _ = call(weighting, jac, losses=torch.ones(m, dtype=torch.float64))
        coef = combined @ g / (g @ g)
        assert coef > 0, (name, m, answer)
        assert torch.allclose(combined, coef * g, atol=1e-8 * g.norm() * max(1.0, coef.abs().item())), name


@pytest.mark.parametrize("name", NAMES)
def test_each_weighting_trains_the_tiny_multi_mnist_run(name, write_config):
    section = {"name": name, **weighting_args(name, ["left", "right"])}
    results = session.train(write_config({"weighting": section, "train.epochs": 1}), progress=False,
                            echo=lambda *a, **k: None)
    assert all(0.0 <= results["mtl"][t]["accuracy"] <= 1.0 for t in ("left", "right"))
