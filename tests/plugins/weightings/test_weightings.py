"""The loss weightings EW, UW, DWA: numeric checks, properties, and their claimed effect."""
import math

import pytest
import torch
from torch import nn

from mtl_platform import registry
from mtl_platform.gradients import GradientEngine
from mtl_platform_plugins.weightings.dwa import DWA
from mtl_platform_plugins.weightings.ew import EW
from mtl_platform_plugins.weightings.uw import UW

from conftest import weighting_args


@pytest.fixture(scope="module")
def weightings():
    from mtl_platform.contracts import Needs

    reg, _ = registry.load()
    return {c.name: c.cls for c in reg.components("weighting") if c.cls.needs is Needs.LOSSES}


@pytest.mark.parametrize("m", [1, 2, 5])
def test_every_loss_weighting_gives_finite_positive_weights_of_the_right_shape(weightings, m):
    losses = torch.rand(m) + 0.1
    for name, cls in weightings.items():
        tasks = [f"t{i}" for i in range(m)]
        w = cls(tasks, **weighting_args(name, tasks)).weights(losses)
        assert w.shape == (m,), name
        assert torch.isfinite(w).all() and (w > 0).all(), name


def test_ew_is_the_plain_sum():
    assert torch.equal(EW(["a", "b", "c"]).weights(torch.tensor([3.0, 0.1, 7.0])), torch.ones(3))


def test_uw_weights_and_auxiliary_gradient():
    uw = UW(["a", "b"], init=0.0)
    with torch.no_grad():
        uw.log_var.copy_(torch.tensor([0.0, math.log(4.0)]))
    assert torch.allclose(uw.weights(torch.ones(2)), torch.tensor([0.5, 0.125]))
    losses = torch.tensor([2.0, 4.0])
    uw.aux_loss(losses).backward()
    # d/ds [½ e^{-s} L + ½ s] = ½ (1 − e^{-s} L): s=0, L=2 → −0.5; s=log 4, L=4 → 0
    assert torch.allclose(uw.log_var.grad, torch.tensor([-0.5, 0.0]))


def test_uw_learns_each_tasks_loss_scale():
    """Kendall et al.: at the optimum σ_t² = L_t, so tasks with larger losses get smaller weights."""
    uw = UW(["small", "large"])
    opt = torch.optim.Adam(uw.parameters(), lr=0.05)
    losses = torch.tensor([0.2, 5.0])
    for _ in range(600):
        opt.zero_grad()
        uw.aux_loss(losses).backward()
        opt.step()
    assert torch.allclose(uw.log_var.exp(), losses, rtol=1e-2)
    w = uw.weights(losses)
    assert torch.allclose(w * losses, torch.full((2,), 0.5), rtol=1e-2)  # contributions equalised


def test_dwa_matches_its_equation_by_hand():
    dwa = DWA(["a", "b"], T=2.0)
    assert torch.equal(dwa.weights(torch.ones(2)), torch.ones(2))
    dwa.epoch_end(torch.tensor([1.0, 2.0]))
    assert torch.equal(dwa.weights(torch.ones(2)), torch.ones(2))  # still < 2 epochs of history
    dwa.epoch_end(torch.tensor([0.5, 2.0]))
    # r = [0.5/1, 2/2] = [0.5, 1]; w = 2·softmax(r/2) = 2·e^{[0.25,0.5]} / (e^0.25 + e^0.5)
    e1, e2 = math.exp(0.25), math.exp(0.5)
    expected = torch.tensor([2 * e1 / (e1 + e2), 2 * e2 / (e1 + e2)])
    assert torch.allclose(dwa.weights(torch.ones(2)), expected)
    assert abs(dwa.weights(torch.ones(2)).sum().item() - 2) < 1e-6
    # the task whose loss falls more slowly ('b') gets the larger weight
    assert dwa.weights(torch.ones(2))[1] > dwa.weights(torch.ones(2))[0]


def test_dwa_state_round_trips():
    dwa = DWA(["a", "b", "c"])
    for losses in ([1.0, 2.0, 3.0], [0.9, 1.0, 3.0], [0.5, 0.9, 2.0]):
        dwa.epoch_end(torch.tensor(losses))
    fresh = DWA(["a", "b", "c"])
    fresh.load_state_dict(dwa.state_dict())
    assert torch.equal(fresh.weights(torch.ones(3)), dwa.weights(torch.ones(3)))


def test_dwa_with_identical_ratios_is_equal_weighting():
    dwa = DWA(["a", "b", "c"])
    dwa.epoch_end(torch.tensor([1.0, 2.0, 4.0]))
    dwa.epoch_end(torch.tensor([0.5, 1.0, 2.0]))
    assert torch.allclose(dwa.weights(torch.ones(3)), torch.ones(3))


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.shared = nn.Linear(3, 4)
        self.heads = nn.ModuleDict({"a": nn.Linear(4, 1), "b": nn.Linear(4, 1)})

    def forward(self, x):
        z = torch.tanh(self.shared(x))
        return {t: h(z).squeeze(-1) for t, h in self.heads.items()}

    def shared_parameters(self):
        return list(self.shared.parameters())

    def task_parameters(self, task):
        return list(self.heads[task].parameters())

    def parameter_blocks(self):
        return [self.shared_parameters()]


@pytest.mark.parametrize("mode", ["param", "rep"])
def test_engine_adds_the_gradient_of_the_weighted_sum(mode):
    torch.manual_seed(0)
    model, x = TwoHeads(), torch.randn(8, 3)
    uw = UW(["a", "b"])
    with torch.no_grad():
        uw.log_var.copy_(torch.tensor([0.3, -0.7]))
    engine = GradientEngine(model, uw, ["a", "b"], mode=mode)

    def losses():
        out = model(x)
        return {"a": out["a"].pow(2).mean(), "b": (out["b"] - 1).pow(2).mean()}

    l = losses()
    w = uw.weights(torch.stack([l["a"], l["b"]]).detach())
    expected = torch.autograd.grad(w[0] * l["a"] + w[1] * l["b"], list(model.parameters()))
    model.zero_grad()
    engine.backward(losses())
    for p, g in zip(model.parameters(), expected):
        assert torch.allclose(p.grad, g, atol=1e-6)
    assert model.shared.weight.grad.abs().sum() > 0  # the encoder receives its gradient
    assert uw.log_var.grad is not None and uw.log_var.grad.abs().sum() > 0  # aux loss in the same call
    first = model.shared.weight.grad.clone()
    engine.backward(losses())  # adds, like Tensor.backward
    assert torch.allclose(model.shared.weight.grad, 2 * first, atol=1e-6)


def test_engine_rejects_an_answer_of_the_wrong_shape():
    from mtl_platform.contracts import Needs, Weighting

    class Broken(Weighting):
        name = "broken"
        needs = Needs.GRAMIAN
        scales_heads = False

        def weights(self, losses, **computed):
            return torch.ones(3)

    model = TwoHeads()
    out = model(torch.randn(4, 3))
    engine = GradientEngine(model, Broken(["a", "b"]), ["a", "b"])
    with pytest.raises(ValueError, match=r"returned shape \(3,\)"):
        engine.backward({"a": out["a"].sum(), "b": out["b"].sum()})


def test_the_engine_computes_gramians_in_full_precision_under_autocast():
    from mtl_platform.contracts import Needs, Weighting

    class Spy(Weighting):
        name = "spy"
        needs = Needs.GRAMIAN
        scales_heads = False

        def weights(self, losses, gram=None, **computed):
            self.dtypes = (losses.dtype, gram.dtype)
            return torch.ones(2, dtype=gram.dtype)

    torch.manual_seed(0)
    model, spy = TwoHeads(), Spy(["a", "b"])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(8, 3))
        assert out["a"].dtype == torch.bfloat16  # the forward really ran in bf16
        GradientEngine(model, spy, ["a", "b"]).backward({"a": out["a"].pow(2).mean(), "b": out["b"].mean()})
    assert spy.dtypes == (torch.float32, torch.float64)  # Gramians are accumulated in float64
    assert model.shared.weight.grad.dtype == torch.float32
