"""Dense-prediction backbones: staged SegNet and DeepLab ResNet encoders, weight loading, heads."""
from __future__ import annotations

import re
import urllib.error

import pytest
import torch
import torchvision
from torch import nn

from mtl_platform.errors import UserError
from mtl_platform_plugins.domains.dense.backbones import (aspp_head, conv_head, load_pretrained,
                                                          resnet_encoder, segnet_encoder)

pytestmark = pytest.mark.usefixtures("one_thread")


def _run_stages(encoder, x):
    shapes = []
    for stage in encoder.stages:
        x = stage(x)
        shapes.append(tuple(x.shape[1:]))
    return x, shapes


def _params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.fixture
def save(tmp_path):
    """``save(obj, name)``: torch.save ``obj`` under tmp_path and return the path as a string."""
    def write(obj, name="w.pt"):
        torch.save(obj, tmp_path / name)
        return str(tmp_path / name)

    return write


def _tv_keys(model):
    return {k for k in model.state_dict() if not k.startswith("fc.")}


def _keys(encoder):
    return {re.sub(r"^stages\.\d+\.", "", k) for k in encoder.state_dict()}


@pytest.mark.parametrize("size", [(32, 64), (64, 32), (96, 64)])
def test_segnet_stage_shapes_and_composition(size):
    torch.manual_seed(0)
    enc = segnet_encoder(size, width=4).eval()
    assert len(enc.stages) == 10
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        y, shapes = _run_stages(enc, x)
        assert torch.equal(enc(x), y)
    assert tuple(shapes) == enc.stage_shapes
    assert enc.out_shape == (4, *size)
    assert shapes[4] == (32, size[0] // 32, size[1] // 32)


def test_segnet_widths_and_bad_sizes():
    enc = segnet_encoder((32, 32), width=64)
    assert [s[0] for s in enc.stage_shapes] == [64, 128, 256, 512, 512, 512, 256, 128, 64, 64]
    convs = [sum(isinstance(m, nn.Conv2d) for m in s.modules()) for s in enc.stages]
    assert convs == [2, 2, 3, 3, 3, 3, 3, 3, 2, 2]  # as MTAN's SegNet
    for bad in [(48, 64), (64, 100), (16, 32)]:
        with pytest.raises(ValueError, match="divisible by 32"):
            segnet_encoder(bad)


@pytest.mark.parametrize("depth,os_,size", [(18, 8, (32, 64)), (18, 16, (33, 47)), (50, 8, (40, 24)),
                                            (50, 16, (64, 64)), (18, 32, (64, 64))])
def test_resnet_stage_shapes_and_composition(depth, os_, size):
    torch.manual_seed(0)
    enc = resnet_encoder(depth, size, width=8, output_stride=os_).eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        y, shapes = _run_stages(enc, x)
        assert torch.equal(enc(x), y)
    assert tuple(shapes) == enc.stage_shapes
    c = 8 * (8 if depth == 18 else 32)
    assert enc.out_shape == (c, -(-size[0] // os_), -(-size[1] // os_))


def test_output_stride_and_dilation():
    for os_, out in [(8, 8), (16, 4), (32, 2)]:
        assert resnet_encoder(18, (64, 64), width=8, output_stride=os_).out_shape[1:] == (out, out)
    enc = resnet_encoder(50, (64, 64), width=8, output_stride=8)
    layer3, layer4 = enc.stages[3].layer3, enc.stages[4].layer4
    assert layer4[0].conv2.dilation == (2, 2) and layer4[0].conv2.stride == (1, 1)
    assert all(b.conv2.dilation == (4, 4) for b in layer4[1:])
    assert all(b.conv2.dilation == (2, 2) for b in layer3[1:]) and layer3[0].conv2.stride == (1, 1)
    enc = resnet_encoder(18, (64, 64), width=8, output_stride=16)
    layer3, layer4 = enc.stages[3].layer3, enc.stages[4].layer4
    assert layer3[0].conv1.stride == (2, 2) and layer3[1].conv1.dilation == (1, 1)
    assert layer4[0].conv1.stride == (1, 1) and layer4[1].conv1.dilation == (2, 2)
    with pytest.raises(ValueError, match="output_stride"):
        resnet_encoder(18, (64, 64), output_stride=4)
    with pytest.raises(ValueError, match="depth"):
        resnet_encoder(20, (64, 64))


def test_resnet_parameter_counts_and_torchvision_keys():
    enc = resnet_encoder(50, (64, 64))
    assert _params(enc) == 23_508_032
    assert round(_params(enc.stages[3]) / 1e6, 2) == 7.10
    assert round(_params(enc.stages[4]) / 1e6, 2) == 14.96
    assert _keys(enc) == _tv_keys(torchvision.models.resnet50())
    assert _keys(resnet_encoder(18, (64, 64))) == _tv_keys(torchvision.models.resnet18())
    # thesis §1.3: HPS on NYUv2 (ResNet-50 + three ASPP heads) has 71.89M parameters
    heads = [aspp_head(2048, c, (288, 384)) for c in (13, 1, 3)]
    assert round((23_508_032 + sum(map(_params, heads))) / 1e6, 2) == 71.89


def test_same_function_as_torchvision(save):
    """With the same weights, the OS-8 ResNet-50 equals torchvision's with
    replace_stride_with_dilation=[False, True, True] (and ResNet-18 at OS 32 the plain one)."""
    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 32)
    for tv, depth, os_, dil in [(torchvision.models.resnet50, 50, 8, [False, True, True]),
                                (torchvision.models.resnet18, 18, 32, None)]:
        ref = (tv(replace_stride_with_dilation=dil) if dil else tv()).eval()
        enc = resnet_encoder(depth, (32, 32), output_stride=os_).eval()
        load_pretrained(enc, save(ref.state_dict()), "t")
        with torch.no_grad():
            want = ref.layer4(ref.layer3(ref.layer2(ref.layer1(ref.maxpool(ref.relu(ref.bn1(ref.conv1(x))))))))
            assert torch.allclose(enc(x), want, atol=1e-5)


def test_load_local_file(save):
    ref = torchvision.models.resnet18()
    path = save(ref.state_dict())
    enc = resnet_encoder(18, (32, 32), pretrained=path)
    assert torch.equal(enc.stages[0].conv1.weight, ref.conv1.weight)
    assert torch.equal(enc.stages[4].layer4[1].bn2.running_var, ref.layer4[1].bn2.running_var)
    # a {'state_dict': ...} wrapper with DataParallel's 'module.' prefixes, no BN counters
    wrapped = {"state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()
                              if not k.endswith("num_batches_tracked")}}
    enc = resnet_encoder(18, (32, 32), pretrained=save(wrapped, "wrapped.pth"))
    assert torch.equal(enc.stages[3].layer3[0].downsample[0].weight, ref.layer3[0].downsample[0].weight)


def test_load_errors_name_where(save):
    state = torchvision.models.resnet18().state_dict()
    bad = dict(state, **{"extra.weight": torch.zeros(1)})
    del bad["layer1.0.conv1.weight"]
    with pytest.raises(UserError, match=r"^backbone\.pretrained: .*missing layer1\.0\.conv1\.weight.*"
                                        r"unexpected extra\.weight"):
        resnet_encoder(18, (32, 32), pretrained=save(bad), where="backbone.pretrained")
    with pytest.raises(UserError, match=r"^bb: .*wrong shapes.*width-64"):
        resnet_encoder(18, (32, 32), width=8, pretrained=save(state), where="bb")
    with pytest.raises(UserError, match=r"^bb: .*not a state_dict"):
        resnet_encoder(18, (32, 32), pretrained=save([1, 2], "list.pt"), where="bb")
    with pytest.raises(UserError, match=r"^bb: no weights file 'no/such/file.pt'"):
        resnet_encoder(18, (32, 32), pretrained="no/such/file.pt", where="bb")
    for name in ["ResNet18_Weights.NOPE", "Foo_Weights.X", "NOPE_V9"]:
        with pytest.raises(UserError, match=r"^bb: unknown torchvision weights"):
            resnet_encoder(18, (32, 32), pretrained=name, where="bb")
    with pytest.raises(UserError, match=r"^bb: .*names weights without a model"):
        load_pretrained(nn.Linear(2, 2), "IMAGENET1K_V1", "bb")


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """An empty torch.hub cache; any download fails as it would offline."""
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return tmp_path / "hub"


def test_weights_name_offline_is_a_user_error(hub_dir):
    with pytest.raises(UserError) as info:
        resnet_encoder(50, (32, 32), pretrained="ResNet50_Weights.IMAGENET1K_V1", where="domain.pretrained")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("domain.pretrained: ") and "ResNet50_Weights.IMAGENET1K_V1" in msg
    assert "download it once with internet, or give a local file path, or set pretrained: null" in msg


def test_weights_name_from_hub_cache(hub_dir):
    ref = torchvision.models.resnet18()
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    (hub_dir / "checkpoints").mkdir(parents=True)
    torch.save(ref.state_dict(), hub_dir / "checkpoints" / url.rsplit("/", 1)[-1])
    for name in ["IMAGENET1K_V1", "ResNet18_Weights.IMAGENET1K_V1"]:
        enc = resnet_encoder(18, (32, 32), pretrained=name)
        assert torch.equal(enc.stages[0].conv1.weight, ref.conv1.weight)


@pytest.mark.parametrize("make", [lambda c, n: aspp_head(16, c, (32, 48), width=8, normalize=n),
                                  lambda c, n: conv_head(16, c, (32, 48), normalize=n)])
def test_heads_shape_and_normalize(make):
    torch.manual_seed(0)
    for size in [(4, 6), (32, 48)]:
        x = torch.randn(2, 16, *size)
        assert make(13, False)(x).shape == (2, 13, 32, 48)
        y = make(3, True)(x)
        assert y.shape == (2, 3, 32, 48)
        assert torch.allclose(y.norm(dim=1), torch.ones(2, 32, 48), atol=1e-5)


@pytest.mark.parametrize("build", [
    lambda: (segnet_encoder((32, 32), width=4), lambda c: conv_head(c, 3, (32, 32))),
    lambda: (resnet_encoder(18, (32, 32), width=4), lambda c: aspp_head(c, 3, (32, 32), width=8)),
    lambda: (resnet_encoder(50, (32, 32), width=4, output_stride=16),
             lambda c: aspp_head(c, 3, (32, 32), width=8, normalize=True)),
])
def test_gradient_reaches_every_stage(build):
    torch.manual_seed(0)
    enc, head_for = build()
    head = head_for(enc.out_shape[0])
    loss = head(enc(torch.randn(2, 3, 32, 32))).pow(2).mean()
    loss.backward()
    for i, stage in enumerate(enc.stages):
        grads = [p.grad for p in stage.parameters()]
        assert all(g is not None for g in grads), i
        assert any(g.abs().sum() > 0 for g in grads), i
    assert all(p.grad is not None for p in head.parameters())
