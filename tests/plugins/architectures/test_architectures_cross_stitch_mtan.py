"""Cross-stitch (Misra et al., CVPR 2016) and MTAN (Liu et al., CVPR 2019) on tiny staged encoders."""
import pytest
import torch
from torch import nn

from mtl_platform.contracts import StagedEncoder
from mtl_platform.errors import UserError
from mtl_platform_plugins.architectures.cross_stitch import CrossStitch
from mtl_platform_plugins.architectures.mtan import MTAN

ARCHS = [CrossStitch, MTAN]
OUT = 3  # every head's output width


def mlp_encoder():
    """2-D stage outputs only."""
    return StagedEncoder([nn.Sequential(nn.Linear(6, 8), nn.ReLU()), nn.Sequential(nn.Linear(8, 5), nn.ReLU())],
                         out_shape=(5,), stage_shapes=((8,), (5,)))


def conv_encoder():
    """4-D stage outputs, then a flattening stage."""
    return StagedEncoder([nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU()),
                          nn.Sequential(nn.Conv2d(4, 5, 3, stride=2, padding=1), nn.ReLU()),
                          nn.Sequential(nn.Flatten(), nn.Linear(5 * 3 * 3, 7), nn.Tanh())],
                         out_shape=(7,), stage_shapes=((4, 6, 6), (5, 3, 3), (7,)))


ENCODERS = {"mlp": (mlp_encoder, (6,)), "conv": (conv_encoder, (2, 6, 6))}


pytestmark = pytest.mark.usefixtures("one_thread")


def build(arch, m, enc, **params):
    factory, in_shape = ENCODERS[enc]
    width = factory().out_shape[0]
    tasks = [f"t{i}" for i in range(m)]
    model = arch(tasks, factory, lambda t: nn.Linear(width, OUT), **params)
    return model, tasks, torch.randn(4, *in_shape)


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a.name)
@pytest.mark.parametrize("m", [2, 3, 5])
@pytest.mark.parametrize("enc", list(ENCODERS))
def test_forward_backward_and_parameter_split(arch, m, enc):
    torch.manual_seed(0)
    model, tasks, x = build(arch, m, enc)
    out = model(x)
    assert set(out) == set(tasks) and all(out[t].shape == (4, OUT) for t in tasks)
    assert model.rep is None and not arch.has_rep

    owned = [id(p) for p in model.shared_parameters()]
    for t in tasks:
        owned += [id(p) for p in model.task_parameters(t)]
    owned += [id(p) for p in model.architecture_parameters()]
    every = [id(p) for p in model.parameters() if p.requires_grad]
    assert sorted(owned) == sorted(every) and len(set(owned)) == len(owned)
    assert [id(p) for b in model.parameter_blocks() for p in b] == [id(p) for p in model.shared_parameters()]
    assert all(model.parameter_blocks())

    for t in tasks:
        model.zero_grad()
        model(x)[t].pow(2).mean().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.shared_parameters() if p.dim() > 1)
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.task_parameters(t) if p.dim() > 1)
        for other in tasks:
            if other != t:
                assert all(p.grad is None or not p.grad.any() for p in model.task_parameters(other))


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a.name)
def test_encoder_without_stage_shapes_is_a_user_error(arch):
    def factory():
        return StagedEncoder([nn.Linear(6, 5)], out_shape=(5,))
    with pytest.raises(UserError, match=f"{arch.name}.*stage_shapes"):
        arch(["a", "b"], factory, lambda t: nn.Linear(5, 1))


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a.name)
def test_multi_input_batches(arch):
    torch.manual_seed(0)
    model, tasks, x = build(arch, 3, "conv")
    out = model({t: torch.randn_like(x) for t in tasks})
    assert all(out[t].shape == (4, OUT) for t in tasks)


# --- cross-stitch -------------------------------------------------------------------------

def test_cross_stitch_alpha_initialisation_and_shapes():
    model, tasks, _ = build(CrossStitch, 3, "conv")
    assert len(model.units) == 2  # after every stage but the last
    a0 = model.units[0].alpha
    assert a0.shape == (4, 3, 3)
    expected = torch.full((3, 3), 0.05)
    expected.fill_diagonal_(0.9)
    assert torch.equal(a0[2], expected)
    model, _, _ = build(CrossStitch, 3, "conv", per_channel=False, after_last=True)
    assert len(model.units) == 3 and all(u.alpha.shape == (3, 3) for u in model.units)
    # with a unit after the last stage every copy is shared; only the heads are task-specific
    assert all(len(model.task_parameters(t)) == 2 for t in ["t0", "t1", "t2"])
    model, _, _ = build(CrossStitch, 1, "mlp")  # one task: the unit is the identity
    assert model.units[0].alpha is None


@pytest.mark.parametrize("enc", list(ENCODERS))
@pytest.mark.parametrize("per_channel", [True, False])
def test_cross_stitch_with_self_weight_one_is_independent_networks(enc, per_channel):
    torch.manual_seed(0)
    model, tasks, x = build(CrossStitch, 3, enc, self_weight=1.0, per_channel=per_channel)
    out = model(x)
    for t in tasks:
        private = x
        for stage in model.encoders[t].stages:  # task t's copy alone
            private = stage(private)
        assert torch.equal(out[t], model.heads[t](private))


def test_cross_stitch_mixes_tasks():
    torch.manual_seed(0)
    model, tasks, x = build(CrossStitch, 2, "mlp")
    before = model(x)["t0"].detach()
    with torch.no_grad():
        for p in model.encoders["t1"].stages[0].parameters():
            p.add_(1.0)
    assert not torch.allclose(model(x)["t0"], before)  # t0 sees t1's copy through α_{01}
    # the same x̃ by hand at the first unit
    h = [model.encoders[t].stages[0](x) for t in tasks]
    mixed = model.units[0](h)
    alpha = model.units[0].alpha  # (C, 2, 2)
    torch.testing.assert_close(mixed[0], alpha[:, 0, 0] * h[0] + alpha[:, 0, 1] * h[1])


# --- MTAN -----------------------------------------------------------------------------------

@pytest.mark.parametrize("enc", list(ENCODERS))
def test_mtan_masks_are_soft_and_shaped_like_the_stage_outputs(enc):
    torch.manual_seed(0)
    model, tasks, x = build(MTAN, 3, enc)
    model(x)
    shapes = model.encoder.stage_shapes
    for t in tasks:
        assert len(model.masks[t]) == len(shapes)
        for mask, shape in zip(model.masks[t], shapes):
            assert mask.shape == (4, *shape)
            assert (mask > 0).all() and (mask < 1).all()


@pytest.mark.parametrize("enc", list(ENCODERS))
def test_mtan_with_masks_forced_to_one_is_the_plain_encoder(enc):
    torch.manual_seed(0)
    model, tasks, x = build(MTAN, 3, enc)
    with torch.no_grad():
        for t in tasks:
            for module in model.attention[t]:
                module.gate[-1].bias.fill_(1e4)
    out = model(x)
    plain = model.encoder(x)
    for t in tasks:
        assert all(bool((mask == 1).all()) for mask in model.masks[t])
        assert torch.equal(out[t], model.heads[t](plain))


def test_mtan_tasks_attend_differently():
    torch.manual_seed(0)
    model, tasks, x = build(MTAN, 2, "conv")
    out = model(x)
    assert not torch.allclose(model.masks["t0"][0], model.masks["t1"][0])
    assert not torch.allclose(out["t0"], out["t1"])


# --- training ---------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a.name)
@pytest.mark.parametrize("enc", list(ENCODERS))
def test_thirty_steps_reduce_the_loss(arch, enc):
    torch.manual_seed(0)
    model, tasks, _ = build(arch, 3, enc)
    x = torch.randn(64, *ENCODERS[enc][1])
    maps = {t: torch.randn(x[0].numel(), OUT) for t in tasks}  # a learnable target per task
    targets = {t: torch.tanh(x.flatten(1) @ maps[t] / x[0].numel() ** 0.5) for t in tasks}
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def loss():
        out = model(x)
        return sum(nn.functional.mse_loss(out[t], targets[t]) for t in tasks)

    first = loss().item()
    for _ in range(30):
        opt.zero_grad()
        value = loss()
        value.backward()
        opt.step()
    assert loss().item() < 0.75 * first
