"""The architecture contract (DESIGN.md §3.1), checked for every registered architecture."""
import pytest
import torch

from mtl_platform import registry
from mtl_platform_plugins.domains.multi_mnist.domain import MultiMNIST


@pytest.fixture(scope="module")
def domain():
    d = MultiMNIST(seed=0, **{p.name: p.default for p in MultiMNIST.declared_params()})
    return d


def architectures():
    reg, _ = registry.load()
    return [c.cls for c in reg.components("architecture")]


@pytest.mark.parametrize("arch", architectures(), ids=lambda c: c.name)
def test_parameter_sets_partition_and_gradients_flow_as_declared(arch, domain):
    torch.manual_seed(0)
    model = arch(domain.task_names, domain.encoder_factory, domain.head_factory)
    owned = [id(p) for p in model.shared_parameters()]
    for t in domain.task_names:
        owned += [id(p) for p in model.task_parameters(t)]
    owned += [id(p) for p in model.architecture_parameters()]
    every = [id(p) for p in model.parameters() if p.requires_grad]
    assert sorted(owned) == sorted(every) and len(set(owned)) == len(owned)  # exactly one set each
    blocks = [id(p) for b in model.parameter_blocks() for p in b]
    assert blocks == [id(p) for p in model.shared_parameters()]  # blocks cover the shared set in order

    x = torch.rand(4, 1, 28, 28)
    y = torch.randint(0, 10, (4,))
    for t in domain.task_names:
        model.zero_grad()
        loss = domain.task(t).loss(model(x)[t], y)
        loss.backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.shared_parameters()
                   if p.dim() > 1), f"shared parameters get no gradient from {t}"
        for other in domain.task_names:
            if other != t:
                assert all(p.grad is None or not p.grad.any() for p in model.task_parameters(other))
    assert set(model(x)) == set(domain.task_names)
