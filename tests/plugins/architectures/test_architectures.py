"""The architecture contract (DESIGN.md §3.1), checked for every registered architecture on
MultiMNIST (4-D stage outputs, 2 tasks) and the synthetic regression domain (2-D, m = 2, 3, 5)."""
import pytest
import torch

from mtl_platform import registry
from mtl_platform_plugins.domains.multi_mnist.domain import MultiMNIST
from mtl_platform_plugins.domains.synthetic_regression.domain import SyntheticRegression

from conftest import make_domain

DOMAINS = {
    "multi_mnist": lambda: make_domain(MultiMNIST, train_pairs=64, val_pairs=8, test_pairs=8),
    **{f"synthetic_m{m}": (lambda m=m: make_domain(SyntheticRegression, activations=["sinc"] * m,
                                                   train_samples=64)) for m in (2, 3, 5)},
}


@pytest.fixture(scope="module", params=sorted(DOMAINS))
def domain(request):
    d = DOMAINS[request.param]()
    d.prepare()
    return d


def architectures():
    reg, _ = registry.load(builtin_only=True)
    return [c.cls for c in reg.components("architecture")]


def required_args(name, domain):
    """Parameters without defaults: a tree whose first task branches after stage 1, every
    other task fully shared, all gated with the public encoder (so every shared module is
    reached by every task)."""
    if name == "tree":
        points = len(domain.encoder_factory().stages) + 1
        tasks = domain.task_names
        return {"branch_points": {t: 2 if i == 0 else points for i, t in enumerate(tasks)}, "public_gate": True}
    return {}


@pytest.mark.parametrize("arch", architectures(), ids=lambda c: c.name)
def test_parameter_sets_partition_and_gradients_flow_as_declared(arch, domain):
    torch.manual_seed(0)
    model = arch(domain.task_names, domain.encoder_factory, domain.head_factory, **required_args(arch.name, domain))
    owned = [id(p) for p in model.shared_parameters()]
    for t in domain.task_names:
        owned += [id(p) for p in model.task_parameters(t)]
    owned += [id(p) for p in model.architecture_parameters()]
    every = [id(p) for p in model.parameters() if p.requires_grad]
    assert sorted(owned) == sorted(every) and len(set(owned)) == len(owned)  # exactly one set each
    blocks = [id(p) for b in model.parameter_blocks() for p in b]
    assert blocks == [id(p) for p in model.shared_parameters()]  # blocks cover the shared set in order

    x, targets = domain.dataset("train").get_batch(torch.arange(6))
    out = model(x)
    assert set(out) == set(domain.task_names)
    for t in domain.task_names:
        model.zero_grad()
        domain.task(t).loss(model(x)[t], targets[t]).backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.shared_parameters()
                   if p.dim() > 1), f"shared parameters get no gradient from {t}"
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.task_parameters(t))
        for other in domain.task_names:
            if other != t:
                assert all(p.grad is None or not p.grad.any() for p in model.task_parameters(other))
