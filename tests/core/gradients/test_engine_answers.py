"""What the gradient engine does with a weighting's answer, in the default float32 (test_engine.py
runs in float64): it adds the gradient of the weighted sum and the weighting's auxiliary loss in
the same call, refuses an answer of the wrong shape, and gives Gramians in float64 under autocast."""
import pytest
import torch
from torch import nn

from mtl_platform.gradients import GradientEngine
from mtl_platform_plugins.weightings.uw import UW


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
