"""The gradient engine: every path against hand-written autograd (DESIGN.md §3.2, §8)."""
import pytest
import torch
from torch import nn

from mtl_platform.contracts import Needs, Weighting
from mtl_platform.gradients import GradientEngine
from mtl_platform.gradients.jacobian import task_jacobian

TASKS = ["a", "b", "c"]


@pytest.fixture(autouse=True, scope="module")
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


class Net(nn.Module):
    """Two shared stages, a representation z, three heads; 'extra' is shared but reached by task a only."""

    has_rep = True

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.stage1, self.stage2 = nn.Linear(4, 6), nn.Linear(6, 5)
        self.extra = nn.Linear(4, 1)
        self.heads = nn.ModuleDict({t: nn.Linear(5, 1) for t in TASKS})
        self.rep = None

    def forward(self, x):
        self.rep = torch.tanh(self.stage2(torch.tanh(self.stage1(x))))
        out = {t: h(self.rep).squeeze(-1) for t, h in self.heads.items()}
        out["a"] = out["a"] + self.extra(x).squeeze(-1)
        return out

    def shared_parameters(self):
        return [*self.stage1.parameters(), *self.stage2.parameters(), *self.extra.parameters()]

    def task_parameters(self, task):
        return list(self.heads[task].parameters())

    def parameter_blocks(self):
        return [list(self.stage1.parameters()), list(self.stage2.parameters()), list(self.extra.parameters())]


X = torch.randn(7, 4, dtype=torch.float64)
Y = torch.randn(7, dtype=torch.float64)


def losses(model):
    out = model(X)
    return {"a": (out["a"] - Y).pow(2).mean(), "b": (out["b"] + Y).pow(2).mean(), "c": out["c"].abs().mean()}


class Fixed(Weighting):
    """Returns a fixed answer; declares what the test asks."""

    name = "fixed_test"

    def __init__(self, answer, needs=Needs.GRAMIAN, scales_heads=False, mode=None):
        super().__init__(TASKS)
        self.answer, self.needs, self.scales_heads, self.mode = answer, needs, scales_heads, mode
        self.seen = {}

    def weights(self, losses, **computed):
        self.seen = computed
        return self.answer


def grads_of(model, params=None):
    params = params if params is not None else list(model.parameters())
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in params]


def manual(model, coeff_space, coeff_rest, space):
    """Reference: space params get ∇Σ coeff_space·L, everything else ∇Σ coeff_rest·L."""
    l = losses(model)
    vec = torch.stack([l[t] for t in TASKS])
    space_ids = {id(p) for p in space}
    rest = [p for p in model.parameters() if id(p) not in space_ids]
    g_space = torch.autograd.grad((coeff_space * vec).sum(), space, retain_graph=True, allow_unused=True,
                                  materialize_grads=True)
    g_rest = torch.autograd.grad((coeff_rest * vec).sum(), rest, allow_unused=True, materialize_grads=True)
    ref = {id(p): g for p, g in zip(space, g_space)}
    ref.update({id(p): g for p, g in zip(rest, g_rest)})
    return [ref[id(p)] for p in model.parameters()]


def assert_close(got, want):
    for g, w in zip(got, want):
        assert torch.allclose(g, w, atol=1e-10), (g, w)


@pytest.mark.parametrize("scales_heads", [False, True])
def test_param_mode_weights_go_to_the_shared_space_and_heads_follow_the_rule(scales_heads):
    w = torch.tensor([0.5, 2.0, -0.3])
    model = Net()
    weighting = Fixed(w, scales_heads=scales_heads)
    GradientEngine(model, weighting, TASKS).backward(losses(model))
    got = grads_of(model)
    ref = Net()
    want = manual(ref, w, w if scales_heads else torch.ones(3), ref.shared_parameters())
    assert_close(got, want)
    # the Gramian the weighting saw is J Jᵀ over the shared parameters, zero-filled
    ref = Net()
    l = losses(ref)
    jac = task_jacobian(torch.stack([l[t] for t in TASKS]), ref.shared_parameters(), batched=False)
    assert torch.allclose(weighting.seen["gram"], jac @ jac.T)
    assert jac[1:, -5:].abs().sum() == 0  # 'extra' is not reached by b and c: zeros there


def test_task_parameters_get_only_their_own_tasks_gradient():
    model = Net()
    GradientEngine(model, Fixed(torch.tensor([3.0, 0.0, 0.0])), TASKS).backward(losses(model))
    ref = Net()
    for t in TASKS:
        own = torch.autograd.grad(losses(ref)[t], ref.task_parameters(t))
        for p, g in zip(model.task_parameters(t), own):
            assert torch.allclose(p.grad, g)


def test_rep_mode_pushes_the_combined_representation_gradient_through_the_encoder():
    w = torch.tensor([1.5, 0.25, 1.0])
    model = Net()
    weighting = Fixed(w, mode="rep")
    GradientEngine(model, weighting, TASKS).backward(losses(model))
    assert weighting.seen["gram"].shape == (3, 3)
    ref = Net()
    l = losses(ref)
    vec = torch.stack([l[t] for t in TASKS])
    z = ref.rep
    jz = torch.stack([torch.autograd.grad(vec[i], z, retain_graph=True)[0].reshape(-1) for i in range(3)])
    assert torch.allclose(weighting.seen["gram"], jz @ jz.T)
    encoder = [*ref.stage1.parameters(), *ref.stage2.parameters()]
    want_enc = torch.autograd.grad(z, encoder, grad_outputs=(w @ jz).view_as(z), retain_graph=True)
    # outside the space (heads, and 'extra', which bypasses z): the unweighted sum
    others = [*ref.heads.parameters(), *ref.extra.parameters()]
    want_rest = torch.autograd.grad(vec.sum(), others)
    assert_close(grads_of(model, [*model.stage1.parameters(), *model.stage2.parameters()]), want_enc)
    assert_close(grads_of(model, [*model.heads.parameters(), *model.extra.parameters()]), want_rest)


def test_explicit_params_reach_parameters_outside_the_model():
    """UDA narrows the space; a discriminator outside the model still gets ∇Σ L."""
    model = Net()
    disc = nn.Linear(5, 1)
    w = torch.tensor([2.0, 1.0, 0.5])

    def with_disc(m, d):
        l = losses(m)
        l["c"] = l["c"] + d(m.rep).pow(2).mean()
        return l

    space = list(model.stage2.parameters())
    GradientEngine(model, Fixed(w), TASKS).backward(with_disc(model, disc), params=space)
    ref, ref_disc = Net(), nn.Linear(5, 1)
    ref_disc.load_state_dict(disc.state_dict())
    l = with_disc(ref, ref_disc)
    vec = torch.stack([l[t] for t in TASKS])
    want_space = torch.autograd.grad((w * vec).sum(), list(ref.stage2.parameters()), retain_graph=True)
    rest = [p for p in ref.parameters() if all(p is not q for q in ref.stage2.parameters())] + list(ref_disc.parameters())
    want_rest = torch.autograd.grad(vec.sum(), rest, allow_unused=True, materialize_grads=True)
    assert_close(grads_of(model, space), want_space)
    got_rest = grads_of(model, [p for p in model.parameters() if all(p is not q for q in space)]) + grads_of(disc)
    assert_close(got_rest, want_rest)


def test_per_block_weights_and_aggregated_vectors():
    model = Net()
    sizes = [sum(p.numel() for p in b) for b in model.parameter_blocks()]
    W = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [0.5, 0.5, 0.5]])
    weighting = Fixed(W, needs=Needs.BLOCK_GRAMIANS)
    GradientEngine(model, weighting, TASKS).backward(losses(model))
    assert weighting.seen["block_grams"].shape == (3, 3, 3)
    ref = Net()
    l = losses(ref)
    for b, block in enumerate(ref.parameter_blocks()):
        want = torch.autograd.grad((W[b] * torch.stack([l[t] for t in TASKS])).sum(), block, retain_graph=True)
        assert_close(grads_of(model, model.parameter_blocks()[b]), want)
    assert sizes == [30, 35, 5]  # 6·4+6, 5·6+5, 4+1

    model = Net()
    n = sum(sizes)
    vec = torch.arange(n, dtype=torch.float64)
    weighting = Fixed(vec, needs=Needs.JACOBIAN)
    GradientEngine(model, weighting, TASKS).backward(losses(model))
    assert weighting.seen["jacobian"].shape == (3, n)
    assert torch.equal(torch.cat([p.grad.reshape(-1) for p in model.shared_parameters()]), vec)


def test_calls_accumulate_like_tensor_backward():
    model = Net()
    engine = GradientEngine(model, Fixed(torch.tensor([1.0, 2.0, 3.0])), TASKS)
    engine.backward(losses(model))
    once = grads_of(model)
    engine.backward(losses(model))
    assert_close(grads_of(model), [2 * g for g in once])


def test_batched_and_looped_jacobians_agree():
    model = Net()
    l = losses(model)
    vec = torch.stack([l[t] for t in TASKS])
    params = list(model.parameters())
    assert torch.allclose(task_jacobian(vec, params), task_jacobian(vec, params, batched=False))


def test_amp_scaler_scales_what_is_applied_but_not_what_the_weighting_sees():
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    w = torch.tensor([0.5, 1.0, 2.0])
    plain, scaled = Net(), Net()
    seen_plain, seen_scaled = Fixed(w), Fixed(w)
    GradientEngine(plain, seen_plain, TASKS).backward(losses(plain))
    GradientEngine(scaled, seen_scaled, TASKS, scaler=scaler).backward(losses(scaled))
    assert torch.allclose(seen_plain.seen["gram"], seen_scaled.seen["gram"])
    assert_close(grads_of(scaled), [1024.0 * g for g in grads_of(plain)])


def test_rep_mode_falls_back_to_param_and_says_so_once():
    said = []
    model = Net()
    engine = GradientEngine(model, Fixed(torch.ones(3, 3), needs=Needs.BLOCK_GRAMIANS), TASKS, mode="rep",
                            echo=said.append)
    engine.backward(losses(model))
    engine.backward(losses(model))
    assert said == ["gradients: rep mode unavailable for weighting 'fixed_test' "
                    "(the weighting needs per-block Gramians); using param"]


def test_diagnostics_every_k_steps_match_the_gradients():
    model = Net()
    engine = GradientEngine(model, Fixed(torch.ones(3)), TASKS, diagnostics_every=2)
    for _ in range(4):
        engine.backward(losses(model))
    rows = engine.pop_diagnostics()
    assert [r["step"] for r in rows] == [2, 4] and engine.pop_diagnostics() == []
    ref = Net()
    ref.load_state_dict(model.state_dict())
    l = losses(ref)
    jac = task_jacobian(torch.stack([l[t] for t in TASKS]), ref.shared_parameters())
    g = jac @ jac.T
    cos_ab = (g[0, 1] / (g[0, 0] * g[1, 1]).sqrt()).item()
    assert rows[-1]["cos"]["a|b"] == pytest.approx(cos_ab, abs=1e-9)
    assert rows[-1]["norm"]["c"] == pytest.approx(g[2, 2].sqrt().item(), abs=1e-9)
    signs = [g[i, j] < 0 for i in range(3) for j in range(3) if i != j]
    assert rows[-1]["conflict"] == pytest.approx(sum(bool(s) for s in signs) / 6)
    assert rows[-1]["weights"] == {"a": 1.0, "b": 1.0, "c": 1.0}


@pytest.mark.parametrize("needs", [Needs.LOSSES, Needs.GRAMIAN])
def test_accumulation_steps_once_per_k_calls_with_the_mean_gradient(needs):
    w = torch.tensor([1.0, 0.5, 2.0])
    single, accumulated = Net(), Net()
    opt_a = torch.optim.SGD(single.parameters(), lr=0.1)
    opt_b = torch.optim.SGD(accumulated.parameters(), lr=0.1)
    one = GradientEngine(single, Fixed(w, needs=needs), TASKS)
    two = GradientEngine(accumulated, Fixed(w, needs=needs), TASKS, accumulate=2)
    one.backward(losses(single))
    assert one.step([opt_a]) is True
    two.backward(losses(accumulated))
    assert two.step([opt_b]) is False  # nothing stepped yet, gradients kept
    assert accumulated.stage1.weight.grad is not None
    two.backward(losses(accumulated))  # the same batch again: the mean equals one batch's gradient
    assert two.step([opt_b]) is True
    assert all(p.grad is None for p in accumulated.parameters())  # zeroed after the step
    for p, q in zip(single.parameters(), accumulated.parameters()):
        assert torch.allclose(p, q, atol=1e-12)


def test_an_explicit_space_of_every_parameter_takes_no_extra_backward(monkeypatch):
    """``params`` covering every trainable parameter (SDG's ``gradient_space: all``): the space's
    combined gradient is written directly, with no backward of the weighted losses."""
    model = Net()
    answer = torch.tensor([0.3, 1.2, 0.7], dtype=torch.float64)
    engine = GradientEngine(model, Fixed(answer), TASKS)
    everything = list(model.parameters())
    calls = []
    original = torch.Tensor.backward
    monkeypatch.setattr(torch.Tensor, "backward", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    engine.backward(losses(model), params=everything)
    monkeypatch.undo()
    assert calls == []
    vec = torch.stack([losses(model)[t] for t in TASKS])
    expected = torch.autograd.grad((answer * vec).sum(), everything, allow_unused=True, materialize_grads=True)
    for got, want in zip(grads_of(model), expected):
        assert torch.allclose(got, want, atol=1e-12)


class JacobianLossWeighting(Weighting):
    """A loss weighting that needs the Jacobian (like ExcessMTL) and answers fixed task weights."""

    name = "jacobian_loss_weighting"
    needs = Needs.JACOBIAN
    scales_heads = True

    def weights(self, losses, jacobian=None, **computed):
        return torch.tensor([2.0, 0.5], dtype=jacobian.dtype)


def test_a_loss_weighting_that_needs_the_jacobian_is_read_as_task_weights_when_p_equals_m():
    """P = m = 2 shared coordinates: the (2,) answer of a loss weighting is task weights, so the
    shared parameters get wᵀJ and the heads Σ w_t ∇L_t (it was read as the gradient itself,
    and the heads got the unweighted sum)."""
    torch.manual_seed(0)
    shared = nn.Linear(1, 2, bias=False)                        # P = 2 = m
    heads = nn.ModuleList(nn.Linear(2, 1) for _ in range(2))
    model = nn.ModuleDict(dict(shared=shared, heads=heads))
    model.shared_parameters = lambda: list(shared.parameters())
    x = torch.randn(8, 1)

    def losses(m):
        z = torch.tanh(m["shared"](x))
        return {t: (m["heads"][i](z) - i).pow(2).mean() for i, t in enumerate(["a", "b"])}

    GradientEngine(model, JacobianLossWeighting(["a", "b"]), ["a", "b"]).backward(
        losses(model), params=list(shared.parameters()))
    l = losses(model)
    weighted = 2.0 * l["a"] + 0.5 * l["b"]
    want = torch.autograd.grad(weighted, list(model.parameters()))
    for p, g in zip(model.parameters(), want):
        assert torch.allclose(p.grad, g, atol=1e-6), (p.shape, p.grad, g)
