"""The task Gramian accumulated module by module (``gradients/accumulate.py``, issue 16) equals
J Jᵀ of the explicit per-task Jacobian, for every registered architecture (plain and per-block
Gramians), and the combined gradient it applies equals wᵀJ; the engine's accumulated path gives
every Gramian weighting the same update as the Jacobian path, two steps in a row."""
import copy

import pytest
import torch
from torch import nn

from mtl_platform.contracts import Needs
from mtl_platform.gradients import GradientEngine
from mtl_platform.gradients.accumulate import GramianAccumulator
from mtl_platform.gradients.combine import block_slices, gramian
from mtl_platform.gradients.jacobian import task_jacobian

from conftest import weighting_args
from test_architectures import DOMAINS, architectures, required_args

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module", params=sorted(DOMAINS))
def domain(request):
    d = DOMAINS[request.param]()
    d.prepare()
    return d


def loss_vector(model, domain, x, targets):
    out = model(x)
    return torch.stack([domain.task(t).loss(out[t], targets[t]).reshape(()) for t in domain.task_names])


def close(a, b, scale, tol):
    return (a - b).abs().max().item() <= tol * scale


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("arch", architectures(), ids=lambda c: c.name)
def test_accumulated_gramian_is_j_jt_and_the_update_is_wt_j(arch, domain, dtype):
    torch.manual_seed(0)
    model = arch(domain.task_names, domain.encoder_factory, domain.head_factory,
                 **required_args(arch.name, domain)).to(dtype)
    model.train()
    blocks = [[p for p in b if p.requires_grad] for b in model.parameter_blocks()]
    blocks = [b for b in blocks if b]
    shared = [p for b in blocks for p in b]
    others = [p for p in model.parameters() if p.requires_grad and all(p is not q for q in shared)]
    acc = GramianAccumulator(model, blocks)
    x, targets = domain.dataset("train").get_batch(torch.arange(6))
    x = x.to(dtype) if torch.is_tensor(x) and x.is_floating_point() else x
    losses = loss_vector(model, domain, x, targets)
    grams, state = acc.compute(losses, others)
    jac = task_jacobian(losses, shared, batched=False)
    rest = task_jacobian(losses, others, batched=False)
    sizes = [sum(p.numel() for p in b) for b in blocks]
    expected = torch.stack([gramian(jac[:, s]) for s in block_slices(sizes)])
    scale = expected.sum(0).diagonal().max().item()
    tol = 1e-12 if dtype is torch.float64 else 1e-6
    assert scale > 0
    assert close(grams, expected, scale, tol), (grams - expected).abs().max().item() / scale
    # the combined update: per-block weights on the space, loss coefficients elsewhere
    m = losses.shape[0]
    g = torch.Generator().manual_seed(1)
    weights = torch.rand(len(blocks), m, generator=g, dtype=torch.float64)
    coeff = torch.rand(m, generator=g, dtype=dtype)
    model.zero_grad(set_to_none=True)
    acc.apply(state, weights, coeff, 0.5, _add)
    want = torch.cat([weights[b].to(dtype) @ jac[:, s] for b, s in enumerate(block_slices(sizes))]) * 0.5
    got = torch.cat([_grad(p) for p in shared])
    assert close(got, want, want.abs().max().item(), 10 * tol)
    if others:
        want_rest = (coeff @ rest) * 0.5
        got_rest = torch.cat([_grad(p) for p in others])
        assert close(got_rest, want_rest, want_rest.abs().max().item() + 1e-30, 10 * tol)


def _add(p, g):
    g = g.reshape(p.shape).to(p.dtype)
    p.grad = g.clone() if p.grad is None else p.grad + g


def _grad(p):
    return (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)


class Awkward(nn.Module):
    """What the per-module rule must handle exactly: a tied weight (owned by two modules), a
    module called twice, one whose output is a tuple (LSTM), one never called, and a
    convolution whose positions outnumber its parameters and one where they do not."""

    def __init__(self):
        super().__init__()
        self.conv_small = nn.Conv2d(2, 3, 3, padding=1)          # R² > P: per-task Jacobian
        self.norm = nn.BatchNorm2d(3)                            # closed form from x̂
        self.norm_twice = nn.BatchNorm1d(16)                     # closed form, two calls
        self.conv_big = nn.Conv2d(3, 16, 3, stride=2, bias=False)  # R² < P: the kernel form
        self.twice = nn.Linear(16, 16)
        self.lstm = nn.LSTM(16, 8, batch_first=True)
        self.unused = nn.Linear(4, 4)
        self.embed = nn.Linear(8, 8, bias=False)
        self.tied = nn.Linear(8, 8, bias=False)
        self.tied.weight = self.embed.weight
        self.heads = nn.ModuleList(nn.Linear(8, 1) for _ in range(3))

    def shared_parameters(self):
        return [p for n, p in self.named_parameters() if not n.startswith("heads")]

    def forward(self, x):
        z = torch.relu(self.conv_big(torch.relu(self.norm(self.conv_small(x)))))   # (B, 16, h, w)
        z = self.norm_twice(z.mean((2, 3)))
        z = self.twice(torch.tanh(self.norm_twice(self.twice(z))))
        seq, _ = self.lstm(z[:, None, :].repeat(1, 2, 1))
        z = self.tied(torch.tanh(self.embed(seq[:, -1])))
        return [h(z).squeeze(-1) for h in self.heads]


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_tied_twice_called_tuple_output_and_unused_modules_are_exact(dtype, training):
    torch.manual_seed(0)
    model = Awkward().to(dtype)
    if not training:  # batch norms on running statistics other than the batch's
        for norm in (model.norm, model.norm_twice):
            norm.running_mean.uniform_(-1, 1)
            norm.running_var.uniform_(0.5, 2)
    model.train(training)
    shared = [p for p in model.shared_parameters()]
    others = [p for p in model.parameters() if all(p is not q for q in shared)]
    acc = GramianAccumulator(model, [shared])
    assert any(p is model.embed.weight for p in acc.tied)
    x = torch.randn(5, 2, 9, 9, dtype=dtype)
    y = torch.randn(5, 3, dtype=dtype)
    out = model(x)
    losses = torch.stack([(o - y[:, i]).pow(2).mean() for i, o in enumerate(out)])
    grams, state = acc.compute(losses, others)
    live = [u.module for u in state["live"]]
    assert model.lstm not in live  # tuple output: explicit columns
    assert model.norm in live and model.norm_twice in live and model.twice in live
    jac = task_jacobian(losses, shared, batched=False)
    expected = gramian(jac)
    scale = expected.diagonal().max().item()
    tol = 1e-12 if dtype is torch.float64 else 1e-6
    assert close(grams[0], expected, scale, tol)
    w = torch.tensor([[0.2, 1.5, 0.7]], dtype=torch.float64)
    acc.apply(state, w, torch.ones(3, dtype=dtype), 1.0, _add)
    want = w[0].to(dtype) @ jac
    got = torch.cat([_grad(p) for p in shared])
    assert close(got, want, want.abs().max().item(), 10 * tol)


@pytest.mark.parametrize("geometry", [
    dict(kernel_size=3, padding=1),
    dict(kernel_size=3, stride=2, padding=(1, 2), bias=False),
    dict(kernel_size=(3, 1), dilation=2, padding=(2, 0)),
    dict(kernel_size=1, stride=2),
], ids=["3x3", "strided-asymmetric-nobias", "dilated-rect", "1x1-strided"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_convolutions_with_more_positions_than_weights_are_exact_in_every_geometry(geometry, dtype):
    """The per-task plan of a convolution (R² ≥ P: its weight gradient per task, through the
    convolution's own weight-gradient kernel) over strides, dilations, asymmetric padding, no bias
    and two calls of the same layer: G = J Jᵀ and the update wᵀJ."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, **geometry).to(dtype)
    heads = nn.ModuleList(nn.Linear(4, 1) for _ in range(3)).to(dtype)
    model = nn.ModuleDict(dict(conv=conv, heads=heads))
    shared = list(conv.parameters())
    acc = GramianAccumulator(model, [shared])
    x = torch.randn(4, 3, 12, 11, dtype=dtype)
    z = conv(torch.tanh(conv(x)[:, :3])) if conv.out_channels > 3 else None  # the layer called twice
    feats = torch.tanh(z).mean((2, 3))
    losses = torch.stack([h(feats).pow(2).mean() * (t + 1) for t, h in enumerate(heads)])
    assert acc._plan(acc.units[0]) == "rows"
    grams, state = acc.compute(losses, list(heads.parameters()))
    jac = task_jacobian(losses, shared, batched=False)
    expected = gramian(jac)
    scale = expected.diagonal().max().item()
    tol = 1e-12 if dtype is torch.float64 else 1e-5
    assert scale > 0 and close(grams[0], expected, scale, tol), (grams[0] - expected).abs().max().item() / scale
    w = torch.tensor([[0.3, -1.2, 0.8]], dtype=torch.float64)
    acc.apply(state, w, torch.ones(3, dtype=dtype), 1.0, _add)
    want = w[0].to(dtype) @ jac
    got = torch.cat([_grad(p) for p in shared])
    assert close(got, want, want.abs().max().item(), 10 * tol)


def gramian_weightings():
    from mtl_platform import registry

    reg, _ = registry.load(builtin_only=True)
    return [c.cls for c in reg.components("weighting") if c.cls.needs in (Needs.GRAMIAN, Needs.BLOCK_GRAMIANS)]


@pytest.mark.parametrize("wcls", gramian_weightings(), ids=lambda c: c.name)
def test_every_gramian_weighting_gets_the_same_update_from_either_path(wcls):
    from test_architectures import DOMAINS as D

    domain = D["multi_mnist"]()
    domain.prepare()
    from mtl_platform import registry

    reg, _ = registry.load(builtin_only=True)
    arch = reg.get("architecture", "conal" if wcls.needs is Needs.BLOCK_GRAMIANS else "hps").cls
    torch.manual_seed(0)
    base = arch(domain.task_names, domain.encoder_factory, domain.head_factory)
    grads = {}
    for path in ("jacobian", "accumulate"):
        model = copy.deepcopy(base)
        weighting = wcls(domain.task_names, **weighting_args(wcls.name, domain.task_names))
        engine = GradientEngine(model, weighting, domain.task_names, gramian_path=path, echo=lambda m: None)
        assert (engine.accumulator is not None) == (path == "accumulate")
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        seen = []
        for step in range(2):
            x, targets = domain.dataset("train").get_batch(torch.arange(8 * step, 8 * step + 8))
            out = model(x)
            engine.backward({t: domain.task(t).loss(out[t], targets[t]) for t in domain.task_names})
            seen.append(torch.cat([_grad(p) for p in model.parameters()]).clone())
            engine.step([opt])
        grads[path] = seen
    for a, b in zip(grads["jacobian"], grads["accumulate"]):
        assert (a - b).norm() <= 1e-6 * a.norm() + 1e-12, (wcls.name, ((a - b).norm() / a.norm()).item())


class Outside(nn.Module):
    """Breaks the one assumption: ``lin``'s weight is also used outside ``lin.forward``."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.heads = nn.ModuleList(nn.Linear(4, 1) for _ in range(2))

    def shared_parameters(self):
        return list(self.lin.parameters())

    def forward(self, x):
        z = torch.tanh(self.lin(x)) + x @ self.lin.weight.T
        return {f"t{i}": h(z).squeeze(-1) for i, h in enumerate(self.heads)}


def test_a_parameter_used_outside_its_module_is_caught_on_the_first_step_and_the_jacobian_takes_over():
    from mtl_platform_plugins.weightings.mgda import MGDA

    torch.manual_seed(0)
    tasks = ["t0", "t1"]
    x, y = torch.randn(6, 4), torch.randn(6, 2)
    grads, said = {}, []
    base = Outside()
    for path in ("jacobian", "accumulate"):
        model = copy.deepcopy(base)
        engine = GradientEngine(model, MGDA(tasks), tasks, gramian_path=path, echo=said.append)
        for _ in range(2):
            model.zero_grad(set_to_none=True)
            out = model(x)
            engine.backward({t: (out[t] - y[:, i]).pow(2).mean() for i, t in enumerate(tasks)})
        grads[path] = torch.cat([_grad(p) for p in model.parameters()])
        if path == "accumulate":
            assert engine.accumulator is None  # went back to the Jacobian path for good
    assert sum("disagrees with the model's gradients" in s for s in said) == 1
    assert torch.allclose(grads["jacobian"], grads["accumulate"], rtol=1e-6, atol=1e-9)


def test_auto_accumulates_where_layers_have_a_closed_form_and_says_so_once():
    from mtl_platform_plugins.weightings.pcgrad import PCGrad

    said = []
    hps_like = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 4 * 4, 2))
    hps_like.shared_parameters = lambda: list(hps_like.parameters())
    engine = GradientEngine(hps_like, PCGrad(["a", "b"]), ["a", "b"], echo=said.append)
    assert engine.accumulator is not None
    out = hps_like(torch.randn(3, 1, 6, 6))
    for _ in range(2):
        out = hps_like(torch.randn(3, 1, 6, 6))
        engine.backward({"a": out[:, 0].mean(), "b": out[:, 1].pow(2).mean()})
    assert [s for s in said if "accumulated module by module" in s] == [said[0]] and len(said) == 1
    recurrent = nn.LSTM(3, 3)
    recurrent.shared_parameters = lambda: list(recurrent.parameters())
    assert GradientEngine(recurrent, PCGrad(["a", "b"]), ["a", "b"], echo=said.append).accumulator is None


def test_a_deep_copy_of_the_model_records_nothing_into_the_original():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    acc = GramianAccumulator(model, [list(model.parameters())])
    twin = copy.deepcopy(model)  # the forward hooks come along
    twin(torch.randn(5, 3))
    assert all(not u.calls for u in acc.units)
    model(torch.randn(5, 3))
    assert all(len(u.calls) == 1 for u in acc.units)


def test_the_hooks_of_a_discarded_accumulator_record_nothing():
    import gc

    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    acc = GramianAccumulator(model, [list(model.parameters())])
    units = list(acc.units)
    del acc
    gc.collect()
    model(torch.randn(5, 3))
    assert all(not u.calls for u in units)
