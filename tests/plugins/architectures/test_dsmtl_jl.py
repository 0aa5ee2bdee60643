"""DSMTL-JL: α = 0 is the single-task network, α = 1 the HPS network (thesis Eq. 6.1)."""
import pytest
import torch

from mtl_platform.errors import UserError
from mtl_platform_plugins.architectures.dsmtl_jl import DSMTLJL
from mtl_platform_plugins.architectures.hps import HPS
from mtl_platform_plugins.domains.synthetic_regression.domain import SyntheticRegression

from conftest import make_domain

TASKS = ["task0", "task1"]


def domain():
    return make_domain(SyntheticRegression, activations=["sinc"] * 2, train_samples=16)


def set_gates(model, value):
    with torch.no_grad():
        for g in model.gates.values():
            g.fill_(value)


def test_gates_at_zero_and_one_are_stl_and_hps():
    d = domain()
    torch.manual_seed(0)
    model = DSMTLJL(TASKS, d.encoder_factory, d.head_factory)
    x = torch.randn(5, 200)
    assert model.gate_values() == {t: 0.5 for t in TASKS}
    set_gates(model, -1e4)  # α = 0: the private network
    out = model(x)
    for t in TASKS:
        assert torch.allclose(out[t], model.heads[t](model.private[t](x)), atol=1e-6)
    set_gates(model, 1e4)  # α = 1: HPS with the public encoder
    hps = HPS(TASKS, d.encoder_factory, d.head_factory)
    hps.encoder.stages.load_state_dict(model.public.state_dict())
    hps.heads.load_state_dict(model.heads.state_dict())
    out, ref = model(x), hps(x)
    for t in TASKS:
        assert torch.allclose(out[t], ref[t], atol=1e-6)


def test_an_earlier_gate_continues_through_the_private_stages():
    d = domain()
    torch.manual_seed(0)
    model = DSMTLJL(TASKS, d.encoder_factory, d.head_factory, gate_position=1)
    assert len(model.public) == 1  # unused public stages are not built into the model
    set_gates(model, 1e4)  # α = 1 after stage 1: public stage 1, then task t's private stages 2…
    x = torch.randn(4, 200)
    z = model.public[0](x)
    for stage in model.private["task1"].stages[1:]:
        z = stage(z)
    assert torch.allclose(model(x)["task1"], model.heads["task1"](z), atol=1e-6)
    with pytest.raises(UserError, match="gate_position: got 7"):
        DSMTLJL(TASKS, d.encoder_factory, d.head_factory, gate_position=7)
