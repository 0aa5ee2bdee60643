"""The sequential update protocol (``GradientEngine.backward_sequence``): DGE's paper form, K
optimizer steps per batch with r_0 … r_{K−1} all computed at the same parameters (spec
gradients.md §2.2–2.3, the K = 3 vector of §2.6)."""
import pytest
import torch
from torch import nn

from mtl_platform.errors import UserError
from mtl_platform.gradients import GradientEngine
from mtl_platform_plugins.weightings.equilibrium import Equilibrium
from mtl_platform_plugins.weightings.ew import EW

TASKS = ["d1", "d2", "d3"]
G = torch.tensor([[1.0, 0.1], [1.0, -0.1], [-2.0, 0.0]], dtype=torch.float64)
R = torch.tensor([[0.980198, -0.098020], [0.980198, 0.098020], [-1.568317, 0.0]], dtype=torch.float64)


class Quadratic(nn.Module):
    """θ ∈ R²; L_k = g_kᵀθ + ½‖θ‖², so ∇L_k(θ) = g_k + θ: at θ = 0 the task gradients are the
    spec's g_k, and a gradient taken after a step would differ (it would see the moved θ)."""

    def __init__(self):
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(2, dtype=torch.float64))

    def forward(self):
        return {t: G[k] @ self.theta + 0.5 * self.theta @ self.theta for k, t in enumerate(TASKS)}

    def shared_parameters(self):
        return [self.theta]


class Recording(torch.optim.SGD):
    """Plain SGD that keeps the gradient it was asked to step with."""

    def __init__(self, params, lr):
        super().__init__(params, lr=lr)
        self.seen = []

    def step(self, closure=None):
        self.seen.append(self.param_groups[0]["params"][0].grad.detach().clone())
        return super().step(closure)


def run(weighting, update, lr=0.5, params=True):
    model = Quadratic()
    engine = GradientEngine(model, weighting, TASKS, gramian_path="jacobian")
    opt = Recording(model.parameters(), lr)
    losses = model()
    space = [model.theta] if params else None
    if update == "sequential":
        answer = engine.backward_sequence(losses, [opt], params=space)
    else:
        answer = engine.backward(losses, params=space)
        engine.step([opt])
    return model, opt, answer, engine


@pytest.mark.parametrize("params", [True, False])
def test_each_step_sees_its_refined_gradient_at_the_same_parameters(params):
    model, opt, answer, _ = run(Equilibrium(TASKS), "sequential", params=params)
    assert len(opt.seen) == 3
    for seen, expected in zip(opt.seen, R):
        assert torch.allclose(seen, expected, atol=1e-6)
    # SGD: θ = 0 − lr Σ_k r_k, the hand computation
    assert torch.allclose(model.theta.detach(), -0.5 * R.sum(0), atol=1e-6)
    assert torch.allclose(answer @ G, R.sum(0), atol=1e-6)  # the summed form's task weights


def test_sum_form_equals_the_sequential_form_under_plain_sgd():
    seq, _, _, _ = run(Equilibrium(TASKS), "sequential")
    summed, opt, _, _ = run(Equilibrium(TASKS), "sum")
    assert len(opt.seen) == 1
    assert torch.allclose(opt.seen[0], R.sum(0), atol=1e-6)
    assert torch.allclose(seq.theta, summed.theta, atol=1e-12)


def test_identity_sum_of_refined_is_k_times_average_minus_residual():
    w = Equilibrium(TASKS)
    rows = w.sequence(torch.zeros(3, dtype=torch.float64), gram=G @ G.T)
    refined = rows @ G
    residual = (torch.eye(3, dtype=torch.float64) - rows).sum(0) @ G  # row k is e_k − w_k ŝ_k: Σ_k w_k ŝ_k
    assert torch.allclose(refined.sum(0), 3 * G.mean(0) - residual, atol=1e-12)
    assert torch.allclose(w.residual_norm, residual.norm().to(w.residual_norm), atol=1e-9)
    assert w.diagnostics()["residual"] is w.residual_norm


def test_a_loss_weighting_takes_one_step():
    model, opt, answer, _ = run(EW(TASKS), "sequential")
    assert len(opt.seen) == 1
    assert torch.allclose(opt.seen[0], G.sum(0), atol=1e-12)


def test_accumulation_is_refused():
    model = Quadratic()
    engine = GradientEngine(model, Equilibrium(TASKS), TASKS, accumulate=2)
    with pytest.raises(UserError, match="accumulate"):
        engine.backward_sequence(model(), [torch.optim.SGD(model.parameters(), lr=0.1)])


def test_the_weight_state_advances_once_per_batch():
    w = Equilibrium(TASKS)
    _, _, _, engine = run(w, "sequential")
    assert torch.allclose(w.w, torch.tensor([1.0, 1.0, 0.2158416], dtype=torch.float64), atol=1e-6)
    assert engine.micro_steps == 1 and engine.steps == 1


def test_a_gradient_method_without_rows_takes_one_step_of_its_answer():
    from mtl_platform_plugins.weightings.mgda import MGDA

    _, opt_seq, answer_seq, _ = run(MGDA(TASKS), "sequential")
    _, opt_sum, answer_sum, _ = run(MGDA(TASKS), "sum")
    assert len(opt_seq.seen) == 1
    assert torch.allclose(opt_seq.seen[0], opt_sum.seen[0], atol=1e-12)


class Heads(nn.Module):
    """A shared layer and one head per task: parameters outside the gradient space."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.shared = nn.Linear(4, 5).double()
        self.heads = nn.ModuleDict({t: nn.Linear(5, 1).double() for t in TASKS})
        self.x = torch.randn(6, 4, dtype=torch.float64)

    def forward(self):
        z = torch.tanh(self.shared(self.x))
        return {t: (h(z) - k).pow(2).mean() for k, (t, h) in enumerate(self.heads.items())}

    def shared_parameters(self):
        return list(self.shared.parameters())


@pytest.mark.parametrize("explicit", [True, False])
def test_the_fast_step_gradients_equal_one_apply_per_row(explicit, monkeypatch):
    """The Jacobian spaces build every row's gradients from one computation (no backward per
    row); they equal the generic form, one ``apply`` (a backward) per row, to the last bits."""
    from mtl_platform.gradients import spaces

    def seen(generic):
        if generic:
            for cls in (spaces.JacobianSpace, spaces.ExplicitSpace):
                monkeypatch.setattr(cls, "step_gradients", spaces.GradientSpace.step_gradients)
        model = Heads()
        engine = GradientEngine(model, Equilibrium(TASKS), TASKS, gramian_path="jacobian")
        opt = Recording(model.parameters(), 0.1)
        opt.seen_all = []
        step = opt.step

        def record(closure=None):
            opt.seen_all.append([p.grad.clone() for p in model.parameters()])
            return step(closure)
        opt.step = record
        engine.backward_sequence(model(), [opt], params=model.shared_parameters() if explicit else None)
        monkeypatch.undo()
        return opt.seen_all

    fast, generic = seen(False), seen(True)
    assert len(fast) == len(generic) == 3
    for a, b in zip(fast, generic):
        for x, y in zip(a, b):
            assert torch.allclose(x, y, atol=1e-12, rtol=0)
