"""The SDG backbones (plugins/domains/sdg/backbones.py): the digits ConvNet's shapes and parameter
count, torchvision's ResNet-18/50 without fc, and weights loaded from a local file."""
from __future__ import annotations

import pytest
import torch
import torchvision

from mtl_platform.errors import UserError
from mtl_platform_plugins.domains.sdg.backbones import BACKBONES, digits_convnet, digits_head, resnet18, resnet50

pytestmark = pytest.mark.usefixtures("one_thread")


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_digits_convnet_has_the_papers_layers_and_parameter_count():
    net = digits_convnet()
    # conv 5x5 3->64, conv 5x5 64->128, fc 128*5*5 -> 1024, fc 1024 -> 1024 (weights + biases)
    expected = (3 * 64 * 25 + 64) + (64 * 128 * 25 + 128) + (3200 * 1024 + 1024) + (1024 * 1024 + 1024)
    assert expected == 4_537_216
    assert count(net) == expected
    assert net.out_shape == (1024,)
    assert net.stage_shapes == ((64, 14, 14), (128, 5, 5), (1024,))
    head = digits_head(1024, 10)
    assert count(head) == 1024 * 10 + 10
    assert head(net(torch.rand(2, 3, 32, 32))).shape == (2, 10)


def test_a_narrow_digits_convnet_scales_every_layer():
    net = digits_convnet(channels=1, size=28, width=0.125)
    # 8 and 16 channels, 128 features; 28 px: 24 -> 12 -> 8 -> 4, so 16 * 4 * 4 = 256 fc inputs
    expected = (1 * 8 * 25 + 8) + (8 * 16 * 25 + 16) + (256 * 128 + 128) + (128 * 128 + 128)
    assert count(net) == expected
    x = torch.rand(3, 1, 28, 28)
    shapes = []
    for stage in net.stages:
        x = stage(x)
        shapes.append(tuple(x.shape[1:]))
    assert tuple(shapes) == net.stage_shapes == ((8, 12, 12), (16, 4, 4), (128,))


@pytest.mark.parametrize("build, depth, features", [(resnet18, 18, 512), (resnet50, 50, 2048)])
def test_resnets_equal_torchvisions_without_fc_when_given_its_weights_file(tmp_path, build, depth, features):
    reference = getattr(torchvision.models, f"resnet{depth}")(weights=None).eval()
    path = tmp_path / f"resnet{depth}.pt"
    torch.save(reference.state_dict(), path)  # torchvision's names, fc included (ignored)
    net = build(size=64, pretrained=str(path)).eval()
    assert net.out_shape == (features,)
    x = torch.rand(2, 3, 64, 64)
    reference.fc = torch.nn.Identity()
    with torch.no_grad():
        torch.testing.assert_close(net(x), reference(x), atol=1e-5, rtol=1e-5)
    assert count(net) == count(reference)


def test_a_narrow_resnet_keeps_the_staged_shapes():
    net = resnet18(size=32, width=0.125)
    assert net.out_shape == (64,)
    assert net.stage_shapes[-1] == (64,) and len(net.stages) == 6
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 64)


def test_a_saved_convnet_state_dict_round_trips(tmp_path):
    net = digits_convnet(width=0.125)
    path = tmp_path / "convnet.pt"
    torch.save(net.state_dict(), path)
    loaded = digits_convnet(width=0.125, pretrained=str(path))
    fresh = digits_convnet(width=0.125)
    for (name, a), b, c in zip(net.state_dict().items(), loaded.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b), name
    assert not all(torch.equal(a, c) for a, c in zip(net.state_dict().values(), fresh.state_dict().values()))


def test_missing_or_incompatible_weights_are_one_line_user_errors(tmp_path):
    missing = tmp_path / "nowhere" / "resnet18.pt"
    with pytest.raises(UserError, match=r"domain.backbone.pretrained: no weights file .*nowhere"):
        resnet18(size=32, pretrained=str(missing), where="domain.backbone.pretrained")
    other = tmp_path / "resnet50.pt"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), other)
    with pytest.raises(UserError, match="domain.pretrained: weights .* do not fit the model"):
        resnet18(size=32, pretrained=str(other))
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(UserError, match="domain.pretrained: cannot read weights file"):
        digits_convnet(pretrained=str(junk))


def test_every_backbone_is_listed_by_name():
    assert sorted(BACKBONES) == ["digits_convnet", "resnet18", "resnet50"]
    for name, build in BACKBONES.items():
        net = build(channels=3, size=32, width=0.125)
        assert net(torch.rand(2, 3, 32, 32)).shape == (2, *net.out_shape), name
