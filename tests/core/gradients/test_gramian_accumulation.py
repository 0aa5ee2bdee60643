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
        z = torch.relu(self.conv_big(torch.relu(self.conv_small(x))))   # (B, 16, h, w)
        z = z.mean((2, 3))
        z = self.twice(torch.tanh(self.twice(z)))
        seq, _ = self.lstm(z[:, None, :].repeat(1, 2, 1))
        z = self.tied(torch.tanh(self.embed(seq[:, -1])))
        return [h(z).squeeze(-1) for h in self.heads]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_tied_twice_called_tuple_output_and_unused_modules_are_exact(dtype):
    torch.manual_seed(0)
    model = Awkward().to(dtype)
    shared = [p for p in model.shared_parameters()]
    others = [p for p in model.parameters() if all(p is not q for q in shared)]
    acc = GramianAccumulator(model, [shared])
    assert any(p is model.embed.weight for p in acc.tied)
    x = torch.randn(5, 2, 9, 9, dtype=dtype)
    y = torch.randn(5, 3, dtype=dtype)
    out = model(x)
    losses = torch.stack([(o - y[:, i]).pow(2).mean() for i, o in enumerate(out)])
    grams, state = acc.compute(losses, others)
    assert not model.lstm in [u.module for u in state["live"]]  # tuple output: explicit columns
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
