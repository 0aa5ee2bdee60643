"""Mixture-of-experts architectures: MMoE, CGC, PLE, DSelect-k (plugins/architectures/)."""
import pytest
import torch
from torch import nn

from mtl_platform.contracts import StagedEncoder
from mtl_platform.errors import UserError
from mtl_platform_plugins.architectures.cgc import CGC
from mtl_platform_plugins.architectures.dselect_k import DSelectK, smooth_step
from mtl_platform_plugins.architectures.hps import HPS
from mtl_platform_plugins.architectures.mmoe import MMoE
from mtl_platform_plugins.architectures.ple import PLE

OUT = 3  # head output width


pytestmark = pytest.mark.usefixtures("one_thread")


def mlp_encoder(stage_shapes=True):
    """Three stages with 2-D outputs."""
    stages = [nn.Sequential(nn.Linear(6, 8), nn.Tanh()), nn.Sequential(nn.Linear(8, 8), nn.Tanh()),
              nn.Sequential(nn.Linear(8, 5), nn.Tanh())]
    return StagedEncoder(stages, out_shape=(5,), stage_shapes=((8,), (8,), (5,)) if stage_shapes else None)


def conv_encoder():
    """Two 4-D stages, then a flattening stage."""
    stages = [nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Tanh()),
              nn.Sequential(nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.Tanh()),
              nn.Sequential(nn.Flatten(), nn.Linear(4 * 4 * 4, 6), nn.Tanh())]
    return StagedEncoder(stages, out_shape=(6,), stage_shapes=((4, 8, 8), (4, 4, 4), (6,)))


def one_stage_encoder():
    return StagedEncoder([nn.Sequential(nn.Linear(6, 5), nn.Tanh())], out_shape=(5,), stage_shapes=((5,),))


ENCODERS = {"mlp": (mlp_encoder, (6,), 5), "conv": (conv_encoder, (2, 8, 8), 6)}


def heads_for(width):
    return lambda task: nn.Linear(width, OUT)


CONFIGS = [
    (MMoE, {}), (MMoE, {"num_experts": 1}),
    (CGC, {}), (CGC, {"num_shared_experts": 2, "num_task_experts": 2}), (CGC, {"num_shared_experts": 0}),
    (PLE, {}), (PLE, {"num_shared_experts": 2, "num_task_experts": 2}), (PLE, {"num_shared_experts": 0}),
    (PLE, {"num_task_experts": 0}),
    (DSelectK, {}), (DSelectK, {"num_experts": 5, "k": 3}), (DSelectK, {"num_experts": 3, "k": 1}),
]


def build(cls, params, m, enc="mlp"):
    factory, in_shape, width = ENCODERS[enc]
    tasks = [f"t{i}" for i in range(m)]
    return cls(tasks, factory, heads_for(width), **params), tasks, in_shape


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


def test_mmoe_is_the_papers_mixture():
    torch.manual_seed(2)
    model, tasks, in_shape = build(MMoE, {"num_experts": 3}, 2)
    x = torch.randn(5, *in_shape)
    out = model(x)
    experts = model.shared_experts
    feats = torch.stack([e(x) for e in experts], 1)
    h0 = experts[0].stages[0](x)
    for t in tasks:
        g = torch.softmax(h0 @ model.task_gates[t]["0"].linear.weight.T, -1)
        torch.testing.assert_close(out[t], model.heads[t]((g[:, :, None] * feats).sum(1)))


@pytest.mark.parametrize("enc", ["mlp", "conv"])
def test_mmoe_with_one_expert_equals_hps_with_its_weights(enc):
    torch.manual_seed(3)
    model, tasks, in_shape = build(MMoE, {"num_experts": 1}, 3, enc)
    factory, _, width = ENCODERS[enc]
    hps = HPS(tasks, factory, heads_for(width))
    hps.encoder.load_state_dict(model.shared_experts[0].state_dict())
    hps.heads.load_state_dict(model.heads.state_dict())
    x = torch.randn(6, *in_shape)
    got, want = model(x), hps(x)
    for t in tasks:
        torch.testing.assert_close(got[t], want[t])


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


def test_ple_with_one_level_equals_cgc():
    torch.manual_seed(5)
    tasks = ["a", "b", "c"]
    cgc = CGC(tasks, one_stage_encoder, heads_for(5), num_shared_experts=2, num_task_experts=1)
    ple = PLE(tasks, one_stage_encoder, heads_for(5), num_shared_experts=2, num_task_experts=1)
    ple.load_state_dict(cgc.state_dict())
    x = torch.randn(4, 6)
    got, want = ple(x), cgc(x)
    for t in tasks:
        torch.testing.assert_close(got[t], want[t])


def test_ple_classifies_what_other_tasks_reach_as_shared():
    torch.manual_seed(6)
    model, tasks, _ = build(PLE, {"num_shared_experts": 1, "num_task_experts": 1}, 3)
    shared = {id(p) for p in model.shared_parameters()}
    own = {id(p) for p in model.task_parameters("t0")}
    expert = model.task_experts["t0"][0]
    for s, where in ((0, shared), (1, shared), (2, own)):  # experts below the last level are mixed into the shared path
        assert {id(p) for p in expert.stages[s].parameters()} <= where, s
    gates = model.task_gates["t0"]
    assert {id(p) for p in gates["0"].parameters()} <= shared  # feeds level-1 experts, which are shared
    assert {id(p) for p in gates["1"].parameters()} <= own and {id(p) for p in gates["2"].parameters()} <= own
    assert set(model.shared_gates) == {"0", "1"}
    # three stages → three blocks; level j's shared gate sits in block j
    blocks = model.parameter_blocks()
    assert len(blocks) == 3
    assert all(id(p) in {id(q) for q in blocks[j]} for j in (0, 1) for p in model.shared_gates[str(j)].parameters())


@pytest.mark.parametrize("cls,params", [(MMoE, {}), (CGC, {}), (PLE, {}), (DSelectK, {})], ids=lambda c: getattr(c, "name", ""))
def test_multi_input_takes_each_task_from_its_own_batch(cls, params):
    torch.manual_seed(7)
    model, tasks, in_shape = build(cls, params, 2)
    inputs = {"t0": torch.randn(3, *in_shape), "t1": torch.randn(5, *in_shape)}
    out = model(inputs)
    for t in tasks:
        torch.testing.assert_close(out[t], model(inputs[t])[t])


def test_smooth_step():
    g = 2.0
    t = torch.tensor([-5.0, -1.0, 0.0, 1.0, 5.0], requires_grad=True)
    s = smooth_step(t, g)
    assert s.tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    s.sum().backward()
    assert t.grad[[0, 1, 3, 4]].abs().max() < 1e-6 and t.grad[2] > 0  # C¹: zero slope at the ends


@pytest.mark.parametrize("n,k", [(4, 2), (5, 3), (8, 4), (4, 1)])
def test_dselect_k_saturated_gate_selects_exactly_k_experts(n, k):
    torch.manual_seed(8)
    gamma = 0.5
    model, tasks, in_shape = build(DSelectK, {"num_experts": n, "k": k, "gamma": gamma}, 2)
    x = torch.randn(6, *in_shape)
    model(x)
    assert all((w > 0).all() for w in model.gate_weights.values())  # initialised inside the transition region
    with torch.no_grad():
        for j, t in enumerate(tasks):
            gate = model.task_gates[t]["0"]
            gate.selectors.weight.zero_()
            codes = [(j + i) % n for i in range(k)]  # k distinct experts per task
            bits = torch.tensor([[(c >> b) & 1 for b in range(gate.bits)] for c in codes], dtype=torch.float)
            gate.selectors.bias.copy_(((2 * bits - 1) * gamma).flatten())  # |z| = γ > γ/2: saturated
    out = model(x)
    for j, t in enumerate(tasks):
        w = model.gate_weights[f"{t}@0"]
        assert ((w > 0).sum(-1) == k).all()
        assert set(w[0].nonzero().flatten().tolist()) == {(j + i) % n for i in range(k)}
        torch.testing.assert_close(w.sum(-1), torch.ones(6))
        feats = torch.stack([e(x) for e in model.shared_experts], 1)
        torch.testing.assert_close(out[t], model.heads[t]((w[:, :, None] * feats).sum(1)))


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
