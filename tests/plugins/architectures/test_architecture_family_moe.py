"""What the mixture-of-experts architectures MMoE, CGC, PLE and DSelect-k share: they build, run
and split their parameters, gate weights are distributions, no shared and one task expert is
independent per-task networks (CGC, PLE), multi-input batches, bad configurations refused,
declared parameters, thirty steps reduce the loss. Each one's own tests are in test_<name>.py."""
import pytest
import torch
from torch import nn

from mtl_platform.errors import UserError
from mtl_platform_plugins.architectures.cgc import CGC
from mtl_platform_plugins.architectures.dselect_k import DSelectK
from mtl_platform_plugins.architectures.mmoe import MMoE
from mtl_platform_plugins.architectures.ple import PLE

from moe_cases import OUT, build, heads_for, mlp_encoder

pytestmark = pytest.mark.usefixtures("one_thread")


CONFIGS = [
    (MMoE, {}), (MMoE, {"num_experts": 1}),
    (CGC, {}), (CGC, {"num_shared_experts": 2, "num_task_experts": 2}), (CGC, {"num_shared_experts": 0}),
    (PLE, {}), (PLE, {"num_shared_experts": 2, "num_task_experts": 2}), (PLE, {"num_shared_experts": 0}),
    (PLE, {"num_task_experts": 0}),
    (DSelectK, {}), (DSelectK, {"num_experts": 5, "k": 3}), (DSelectK, {"num_experts": 3, "k": 1}),
]


@pytest.mark.parametrize("enc", ["mlp", "conv"])
@pytest.mark.parametrize("m", [2, 3, 5])
@pytest.mark.parametrize("cls,params", CONFIGS, ids=lambda c: c.name if isinstance(c, type) else
                         ",".join(f"{k}={v}" for k, v in c.items()) or "defaults")
def test_builds_runs_and_splits_parameters(cls, params, m, enc):
    torch.manual_seed(0)
    model, tasks, in_shape = build(cls, params, m, enc)
    x = torch.randn(4, *in_shape)
    out = model(x)
    assert set(out) == set(tasks) and all(out[t].shape == (4, OUT) for t in tasks)

    shared = model.shared_parameters()
    owned = [id(p) for p in shared] + [id(p) for t in tasks for p in model.task_parameters(t)]
    owned += [id(p) for p in model.architecture_parameters()]
    every = [id(p) for p in model.parameters() if p.requires_grad]
    assert sorted(owned) == sorted(every) and len(set(owned)) == len(owned)
    assert [id(p) for b in model.parameter_blocks() for p in b] == [id(p) for p in shared]
    assert all(b for b in model.parameter_blocks())

    for t in tasks:
        model.zero_grad()
        model(x)[t].square().mean().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in shared if p.dim() > 1), t
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.task_parameters(t) if p.dim() > 1), t
        for other in tasks:
            if other != t:
                assert all(p.grad is None or not p.grad.any() for p in model.task_parameters(other)), (t, other)


@pytest.mark.parametrize("cls,params", CONFIGS, ids=lambda c: c.name if isinstance(c, type) else str(c))
def test_gate_weights_are_distributions_per_sample_and_task(cls, params):
    torch.manual_seed(1)
    model, tasks, in_shape = build(cls, params, 3, "conv")
    model(torch.randn(7, *in_shape))
    for key, w in model.gate_weights.items():
        assert w.shape[0] == 7 and (w >= 0).all(), key
        torch.testing.assert_close(w.sum(-1), torch.ones(7), msg=key)
    gated = {k.split("@")[0] for k in model.gate_weights}
    pool = getattr(model, "num_task", 0) + model.num_shared
    assert gated >= (set(tasks) if pool > 1 else set())


@pytest.mark.parametrize("cls", [CGC, PLE])
@pytest.mark.parametrize("enc", ["mlp", "conv"])
def test_no_shared_and_one_task_expert_is_independent_per_task_networks(cls, enc):
    torch.manual_seed(4)
    model, tasks, in_shape = build(cls, {"num_shared_experts": 0, "num_task_experts": 1}, 3, enc)
    assert model.shared_parameters() == [] and model.parameter_blocks() == []
    x = torch.randn(6, *in_shape)
    out = model(x)
    for t in tasks:
        expert = model.task_experts[t][0]
        torch.testing.assert_close(out[t], model.heads[t](expert(x)))
        ids = {id(p) for p in model.task_parameters(t)}
        assert ids == {id(p) for p in expert.parameters()} | {id(p) for p in model.heads[t].parameters()}


@pytest.mark.parametrize("cls,params", [(MMoE, {}), (CGC, {}), (PLE, {}), (DSelectK, {})], ids=lambda c: getattr(c, "name", ""))
def test_multi_input_takes_each_task_from_its_own_batch(cls, params):
    torch.manual_seed(7)
    model, tasks, in_shape = build(cls, params, 2)
    inputs = {"t0": torch.randn(3, *in_shape), "t1": torch.randn(5, *in_shape)}
    out = model(inputs)
    for t in tasks:
        torch.testing.assert_close(out[t], model(inputs[t])[t])


def test_refuses_bad_configurations():
    tasks = ["a", "b"]
    with pytest.raises(UserError, match="mmoe.*stage_shapes"):
        MMoE(tasks, lambda: mlp_encoder(stage_shapes=False), heads_for(5))
    with pytest.raises(UserError, match="ple.*stage_shapes"):
        PLE(tasks, lambda: mlp_encoder(stage_shapes=False), heads_for(5))
    with pytest.raises(UserError, match="cgc"):
        CGC(tasks, mlp_encoder, heads_for(5), num_shared_experts=0, num_task_experts=0)
    with pytest.raises(UserError, match="k must be"):
        DSelectK(tasks, mlp_encoder, heads_for(5), num_experts=2, k=3)
    with pytest.raises(UserError, match="gamma"):
        DSelectK(tasks, mlp_encoder, heads_for(5), gamma=0.0)


def test_declared_params_match_constructor_defaults():
    for cls, names in ((MMoE, {"num_experts"}), (CGC, {"num_shared_experts", "num_task_experts"}),
                       (PLE, {"num_shared_experts", "num_task_experts"}), (DSelectK, {"num_experts", "k", "gamma"})):
        assert {p.name for p in cls.params} == names


@pytest.mark.parametrize("cls,params", [(MMoE, {}), (CGC, {}), (PLE, {}), (DSelectK, {})], ids=lambda c: getattr(c, "name", ""))
def test_thirty_steps_reduce_the_loss(cls, params):
    torch.manual_seed(9)
    model, tasks, in_shape = build(cls, params, 3)
    x = torch.randn(64, *in_shape)
    targets = {t: torch.tanh(x @ torch.randn(6, OUT) * 0.5) for t in tasks}
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def loss():
        out = model(x)
        return sum(nn.functional.mse_loss(out[t], targets[t]) for t in tasks)

    first = loss().item()
    for _ in range(30):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert loss().item() < 0.6 * first
