"""Cross-stitch networks (Misra et al., CVPR 2016) on tiny staged encoders: the α initialisation
and shapes, self-weight one is independent networks, tasks mixed through α."""
import pytest
import torch

from mtl_platform_plugins.architectures.cross_stitch import CrossStitch

from cross_stitch_mtan_cases import ENCODERS, build

pytestmark = pytest.mark.usefixtures("one_thread")


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
