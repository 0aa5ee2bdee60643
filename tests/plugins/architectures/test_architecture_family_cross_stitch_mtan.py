"""What cross-stitch (Misra et al., CVPR 2016) and MTAN (Liu et al., CVPR 2019) share, on tiny
staged encoders: forward, backward and the parameter split, an encoder without stage shapes
refused, multi-input batches, thirty steps reduce the loss. Each one's own tests are in
test_cross_stitch.py and test_mtan.py."""
import pytest
import torch
from torch import nn

from mtl_platform.contracts import StagedEncoder
from mtl_platform.errors import UserError
from mtl_platform_plugins.architectures.cross_stitch import CrossStitch
from mtl_platform_plugins.architectures.mtan import MTAN

from cross_stitch_mtan_cases import ENCODERS, OUT, build

ARCHS = [CrossStitch, MTAN]


pytestmark = pytest.mark.usefixtures("one_thread")


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
