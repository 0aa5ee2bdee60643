"""MTAN (Liu et al., CVPR 2019) on tiny staged encoders: soft masks shaped like the stage outputs,
masks forced to one give the plain encoder, tasks attend differently."""
import pytest
import torch

from mtl_platform_plugins.architectures.mtan import MTAN

from cross_stitch_mtan_cases import ENCODERS, build

pytestmark = pytest.mark.usefixtures("one_thread")


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
